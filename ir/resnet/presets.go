package resnet

import (
	"cmp"
	"embed"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
)

//go:embed presets/*.arch
var presetFiles embed.FS

// Preset is a built-in architecture: a DSL file shipped inside the
// compiler, so every network of the paper is one name away.
type Preset struct {
	Name   string // the file name without .arch, also the network's name
	Doc    string // the file's first comment line: what it is, which result it reproduces
	Source string // the DSL text
}

// presets reads the embedded files once.
var presets = sync.OnceValue(func() []Preset {
	entries, err := presetFiles.ReadDir("presets")
	if err != nil {
		panic("BUG: reading embedded presets: " + err.Error())
	}
	var ps []Preset
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".arch")
		if !ok {
			continue
		}
		src, err := presetFiles.ReadFile(path.Join("presets", e.Name()))
		if err != nil {
			panic("BUG: reading embedded preset: " + err.Error())
		}
		first, _, _ := strings.Cut(string(src), "\n")
		doc, _ := strings.CutPrefix(first, "#")
		ps = append(ps, Preset{Name: name, Doc: strings.TrimSpace(doc), Source: string(src)})
	}
	slices.SortFunc(ps, func(a, b Preset) int { return cmp.Compare(a.Name, b.Name) })
	return ps
})

// Presets returns the built-in architectures, sorted by name.
func Presets() []Preset {
	return slices.Clone(presets())
}

// LoadPreset parses the built-in architecture name. Its errors, which only
// a broken preset file could cause, carry the file name "preset:NAME". An
// unknown name is an error that suggests the closest names.
func LoadPreset(name string) (*Arch, error) {
	ps := presets()
	i, found := slices.BinarySearchFunc(ps, name, func(p Preset, name string) int { return cmp.Compare(p.Name, name) })
	if !found {
		return nil, fmt.Errorf("unknown preset %q; closest: %s", name, strings.Join(closestPresets(name, 3), ", "))
	}
	return Parse("preset:"+name, []byte(ps[i].Source))
}

// closestPresets returns the n preset names nearest to name by edit
// distance, nearest first.
func closestPresets(name string, n int) []string {
	type scored struct {
		name string
		dist int
	}
	var s []scored
	for _, p := range presets() {
		s = append(s, scored{p.Name, editDistance(name, p.Name)})
	}
	slices.SortStableFunc(s, func(a, b scored) int { return cmp.Compare(a.dist, b.dist) })
	var names []string
	for i := 0; i < n && i < len(s); i++ {
		names = append(names, s[i].name)
	}
	return names
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 256 {
		a = a[:256] // a name that long is no name; keep the cost bounded
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, sub)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
