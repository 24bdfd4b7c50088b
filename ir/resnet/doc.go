// Package resnet is the architecture language of resnetc: a few lines that
// name a deep residual network of the family of He et al., "Identity
// Mappings in Deep Residual Networks" (2016), its parser, depth handling
// and the built-in presets for every network that paper trains.
//
// A file holds one network:
//
//	# comments run from '#' to the end of the line
//	resnet preact-resnet-164 {
//	    input   32x32x3                 # H x W x C
//	    classes 10
//	    depth   164                     # optional when every stage gives its unit count
//	    stem    conv3x3 16              # conv<K>x<K>[/<stride>] <width> [maxpool3x3/2]
//	    unit    bottleneck order=full-preact shortcut=identity grow=projection
//	    stages  64 128/2 256/2          # [<units>x]<width>[/<stride>] ...
//	    bn      eps=1e-5 momentum=0.1   # optional, these are the defaults
//	}
//
// Parse reads such a file into an Arch; Arch.Format prints one back as
// canonical text; Arch.SetDepth instantiates it at another depth;
// LoadPreset parses a built-in file from the presets directory.
//
// # Lexical structure
//
// The text is split into words and punctuation. A word is a run of bytes
// other than white space (space, tab, newline, carriage return, vertical
// tab, form feed) and the punctuation { } ( ) , = ; # — so 32x32x3, conv7x7/2, 8x512/2, 1-layer, -6 and 1e-5
// are single words, and their parts are read by the statement that uses
// them. A newline or ';' ends a statement; '#' starts a comment that runs
// to the end of the line. Positions are file:line:col, 1-based, columns
// counted in bytes.
//
// # Grammar
//
// In EBNF, with the parts of one word written without spaces between
// them (WordOf):
//
//	File      = { Sep } "resnet" Name "{" { Sep | Statement } "}" { Sep } EOF .
//	Sep       = newline | ";" .
//	Statement = Input | Classes | Depth | Stem | Unit | Stages | BN .
//	            (a statement ends at a Sep or at the closing "}")
//	Input     = "input" WordOf(Int "x" Int "x" Int) .
//	Classes   = "classes" Int .
//	Depth     = "depth" Int .
//	Stem      = "stem" WordOf("conv" Int "x" Int [ "/" Int ]) Int [ "maxpool3x3/2" ] .
//	Unit      = "unit" Kind { Option } .
//	Kind      = "basic" | "1-layer" | "bottleneck" .
//	Option    = "order" "=" Order | "shortcut" "=" Shortcut | "grow" "=" Grow .
//	Order     = "original" | "bn-after-add" | "relu-before-add" | "relu-only-preact" | "full-preact" .
//	Shortcut  = "identity" | "conv1x1"
//	          | "scale" "(" Number "," Number ")"
//	          | "gate" "(" Number ")" | "shortcut-gate" "(" Number ")"
//	          | "dropout" "(" Number ")" .
//	Grow      = "A" | "projection" | "B" .
//	Stages    = "stages" Stage { Stage } .
//	Stage     = WordOf([ Int "x" ] Int [ "/" Int ]) .
//	BN        = "bn" { ( "eps" | "momentum" ) "=" Number } .
//	Name      = ( letter | digit | "-" | "_" | "." ) { letter | digit | "-" | "_" | "." } .   (ASCII)
//	Int       = digit { digit } .
//	Number    = [ "+" | "-" ] ( digits [ "." [ digits ] ] | "." digits ) [ ( "e" | "E" ) [ "+" | "-" ] digits ] .
//
// # Statements
//
// Each statement appears at most once; input, classes, stem, unit and
// stages are required.
//
//   - input HxWxC: the input image, every side at least 1.
//   - classes K: the classes of the fully-connected head, at least 1.
//   - depth D: the depth counted the paper's way (see below).
//   - stem conv<K>x<K>[/<S>] <W> [maxpool3x3/2]: the first layer, a KxK
//     conv of width W and stride S (default 1) with padding K/2, K odd;
//     optionally a 3x3 max pool of stride 2 (the only pool accepted).
//     conv3x3 16 is the CIFAR stem, conv7x7/2 64 maxpool3x3/2 the
//     ImageNet one.
//   - unit KIND [order=O] [shortcut=S] [grow=G]: the residual unit, options
//     in any order. Kinds: basic (two 3x3 convs), 1-layer (one 3x3 conv),
//     bottleneck (1x1, 3x3, 1x1 with inner width W/4). Orders are the
//     paper's Fig. 4 (default original). Shortcuts are its Fig. 2: identity
//     (default), scale(λs, λf) with finite factors, gate(b) and
//     shortcut-gate(b) with a finite gate bias init b, conv1x1, and
//     dropout(p) with 0 <= p < 1. grow is the shortcut where a unit
//     changes width or resolution: A (subsample and zero-pad) or
//     projection (a 1x1 conv; B is an alias); the default is projection
//     for bottleneck units and A for the others. Under grow=A a stage may
//     not be narrower than what precedes it.
//   - stages [<N>x]<W>[/<S>] ...: one entry per stage: N units of output
//     width W, the first with stride S (default 1). Either every stage
//     gives N or none does. Bottleneck widths must be divisible by 4.
//   - bn [eps=E] [momentum=M]: BatchNorm settings, E > 0 and 0 < M <= 1;
//     defaults 1e-5 and 0.1 (running = (1-M)*running + M*batch).
//
// # Depth
//
// Depth is counted as in the paper: the weight layers of the units plus
// two (the stem conv and the fully-connected layer), so depth =
// L*units + 2 with L = 2 for basic, 1 for 1-layer and 3 for bottleneck
// units. When the stages give no unit counts, the depth is required and
// each of the S stages gets n = (depth-2)/(L*S) units, which must be a
// positive integer: basic units on three stages take depths 6n+2 (20, 56,
// 110, 1202), bottleneck units 9n+2 (164, 1001), 1-layer units 3n+2;
// otherwise the error names the form and the nearest depths that fit.
// When the stages give counts, the depth may be omitted; if given it must
// equal L*units + 2. After Parse, Arch.Depth and every Stage.Units are
// set and consistent.
//
// SetDepth changes the depth of a parsed net: uniformly for nets whose
// stages have equal counts, and from the standard tables for the ImageNet
// nets (bottleneck: 50, 101, 152, 200; basic: 18, 34).
//
// # Limits
//
// So that hostile input cannot make later stages allocate absurd amounts,
// input sides are at most 4096, channels and widths at most 65536,
// classes at most 1,000,000, the depth (given or implied) at most 100,000,
// strides at most 4096, the stem kernel at most 15, and there are at most
// 16 stages. A stride S needs a feature map of at least S positions per
// side (below that n/S rounds to zero): this is checked through the stem
// conv, its pool and every stage.
//
// # Errors
//
// Parse never panics on any input. Its error is an ErrorList sorted by
// position; each entry reads "file:line:col: message", saying what was
// found and what was expected:
//
//	bad.arch:5:13: unknown unit kind "bottlenek"; want basic, 1-layer or bottleneck
//	bad.arch:9:1: unexpected end of file; want "}"
//	bad.arch:7:13: width must be a positive integer, found "-16"
//
// Independent mistakes are reported together (up to ten); checks that
// involve several statements run only on statements that parsed cleanly.
//
// # Presets
//
// Presets lists the embedded files presets/NAME.arch, each starting with a
// comment line that says what it is and which result of the paper it
// reproduces; LoadPreset parses one. The uniform nets are written with a
// depth and uncounted stages, so SetDepth works on them; the families
// resnet-basic, resnet-1layer, resnet-bottleneck and their preact- twins
// exist to be instantiated at any depth.
package resnet
