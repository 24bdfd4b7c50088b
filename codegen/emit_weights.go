package codegen

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/dave/jennifer/jen"

	"github.com/resnetc/resnetc/ir"
)

// Tensor roles: what a param or state tensor is to the model.
const (
	roleWeight   = iota // a param
	roleMomentum        // the momentum of a param ("<param>.momentum")
	roleStat            // any other state: running statistics
)

// structField is one tensor's place in the grouped structs: group g
// (0 the first group, in order of appearance), unit u within it (0 for
// groups that are not stages), field f of the group's struct type.
type structField struct{ role, g, u, f int }

// tensorGroup is one field of Weights or Stats: the stem, a stage's
// units, the head.
type tensorGroup struct {
	field string // Go field name: "Stem", "S1", "Head"
	typ   string // element type base: "Stem", "Unit", "Head"
	units int    // > 0 for a stage (an array of units)
}

// tensorStructs assigns every decl tensor its struct field.
type tensorStructs struct {
	groups []*tensorGroup
	// fields of each type base and role, in order of first appearance
	fields map[string]*[3][]string // typ -> role -> local names
	at     map[*declTensor]structField
}

// stageRE splits a unit group "s2.u14" into stage and unit.
func splitUnit(g string) (stage string, unit int, ok bool) {
	if !unitRE.MatchString(g) || unitRE.FindString(g) != g {
		return "", 0, false
	}
	i := strings.IndexByte(g, '.')
	u, err := strconv.Atoi(g[i+2:])
	if err != nil || u < 1 {
		return "", 0, false
	}
	return g[:i], u - 1, true
}

func newTensorStructs(d *declLayout) (*tensorStructs, error) {
	ts := &tensorStructs{fields: map[string]*[3][]string{}, at: map[*declTensor]structField{}}
	groupIdx := map[string]int{}
	for _, t := range d.tensors {
		name, role := t.Name, roleStat
		switch {
		case t.Kind == ir.Param:
			role = roleWeight
		case strings.HasSuffix(name, ".momentum"):
			if p, ok := d.byName[strings.TrimSuffix(name, ".momentum")]; ok && p.Kind == ir.Param {
				name, role = p.Name, roleMomentum
			}
		}
		g := groupOf(name)
		local := strings.TrimPrefix(strings.TrimPrefix(name, g), ".")
		if local == "" {
			local = "value"
		}
		key, unit, typ := g, 0, camel(g)
		if stage, u, ok := splitUnit(g); ok {
			key, unit, typ = stage, u, "Unit"
		}
		gi, ok := groupIdx[key]
		if !ok {
			gi = len(ts.groups)
			groupIdx[key] = gi
			ts.groups = append(ts.groups, &tensorGroup{field: camel(key), typ: typ})
		}
		grp := ts.groups[gi]
		if grp.typ != typ {
			return nil, fmt.Errorf("tensor %q: group %s holds both units and other tensors", t.Name, key)
		}
		if typ == "Unit" {
			grp.units = max(grp.units, unit+1)
		}
		fs := ts.fields[typ]
		if fs == nil {
			fs = &[3][]string{}
			ts.fields[typ] = fs
		}
		// Momentum mirrors the weights: same type, same fields.
		r := role
		if r == roleMomentum {
			r = roleWeight
		}
		f := indexOf(fs[r], local)
		if f < 0 {
			f = len(fs[r])
			fs[r] = append(fs[r], local)
		}
		ts.at[t] = structField{role: role, g: gi, u: unit, f: f}
	}
	// Distinct local names must give distinct Go names.
	for typ, fs := range ts.fields {
		for r := range fs {
			seen := map[string]string{}
			for _, l := range fs[r] {
				if other, dup := seen[camel(l)]; dup {
					return nil, fmt.Errorf("tensors %q and %q of %s have the same Go name %s", other, l, typ, camel(l))
				}
				seen[camel(l)] = l
			}
		}
	}
	return ts, nil
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// typeNames are the struct type suffixes of the roles with a type of
// their own.
var typeNames = [...]string{roleWeight: "Weights", roleStat: "Stats"}

// emitStructs writes Weights and Stats, their group types, and the
// binding of their fields to the model's storage.
func (e *emitter) emitStructs(f *jen.File, ts *tensorStructs) {
	types := make([]string, 0, len(ts.fields))
	for typ := range ts.fields {
		types = append(types, typ)
	}
	sort.Strings(types)
	for _, role := range []int{roleWeight, roleStat} {
		top := typeNames[role]
		var fields []jen.Code
		for _, g := range ts.groups {
			if len(ts.fields[g.typ][role]) == 0 {
				continue
			}
			t := jen.Id(g.typ + top)
			if g.units > 0 {
				fields = append(fields, jen.Id(g.field).Index(jen.Lit(g.units)).Add(t))
			} else {
				fields = append(fields, jen.Id(g.field).Add(t))
			}
		}
		switch role {
		case roleWeight:
			f.Comment("Weights are the trained tensors, grouped as the architecture is: the stem, each")
			f.Comment("stage's units, the head. Each field is a view of the model's storage, named")
			f.Comment("after its tensor (BN1Gamma is \"<unit>.bn1.gamma\"); the momentum of SGD has the")
			f.Comment("same shape. Conv weights are [out][in][kh][kw].")
		case roleStat:
			f.Comment("Stats are the BatchNorm running statistics inference uses, grouped as Weights.")
		}
		f.Type().Id(top).Struct(fields...)
		f.Line()
		for _, typ := range types {
			names := ts.fields[typ][role]
			if len(names) == 0 {
				continue
			}
			var fs, ptrs []jen.Code
			for _, n := range names {
				fs = append(fs, jen.Id(camel(n)).Index().Float32().Comment(n))
				ptrs = append(ptrs, jen.Op("&").Id("x").Dot(camel(n)))
			}
			tn := typ + top
			if typ == "Unit" {
				f.Commentf("%s are the %s of one residual unit; a field is nil in units without", tn, strings.ToLower(top))
				f.Comment("that layer (only the first unit of a stage has a projection shortcut, say).")
			} else {
				f.Commentf("%s are the %s of the %s.", tn, strings.ToLower(top), strings.ToLower(typ))
			}
			f.Type().Id(tn).Struct(fs...)
			f.Line()
			f.Commentf("fields lists pointers to the fields, in the order of the tensor table.")
			f.Func().Params(jen.Id("x").Op("*").Id(tn)).Id("fields").Params().Index(jen.Lit(len(names))).Op("*").Index().Float32().Block(
				jen.Return(jen.Index(jen.Lit(len(names))).Op("*").Index().Float32().Values(ptrs...)),
			)
			f.Line()
		}
		// slot: the field of one tensor.
		var cases []jen.Code
		for gi, g := range ts.groups {
			if len(ts.fields[g.typ][role]) == 0 {
				continue
			}
			x := jen.Id("x").Dot(g.field)
			if g.units > 0 {
				x = x.Index(jen.Id("u"))
			}
			cases = append(cases, jen.Case(jen.Lit(gi)).Block(jen.Return(x.Dot("fields").Call().Index(jen.Id("f")))))
		}
		f.Commentf("slot returns the field of group g, unit u, field f.")
		f.Func().Params(jen.Id("x").Op("*").Id(top)).Id("slot").Params(jen.List(jen.Id("g"), jen.Id("u"), jen.Id("f")).Int()).Op("*").Index().Float32().Block(
			jen.Switch(jen.Id("g")).Block(cases...),
			jen.Panic(jen.Lit("BUG: no tensor group")),
		)
		f.Line()
	}
}
