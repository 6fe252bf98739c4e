package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML configuration file at path. Keys omitted from the
// file keep their Default value; unknown keys, values of the wrong type and
// a second YAML document are errors naming the line. An empty file yields
// Default.
//
// Load does not call Validate, so that command-line flags can still
// override the file before the result is checked. Errors are prefixed
// with "config PATH: ".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// The *PathError would repeat the path the prefix already gives.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, prefixErrors("config "+path, err)
	}
	return cfg, nil
}

// Parse is Load for a configuration already in memory; its errors carry no
// file name.
func Parse(data []byte) (*Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&cfg)
	if errors.Is(err, io.EOF) {
		return &cfg, nil
	}
	if err != nil {
		return nil, explain(data, err)
	}
	if err := wholeNumbers(data); err != nil {
		return nil, err
	}
	// yaml would silently ignore everything after a "---"; a second
	// document is more likely a pasting mistake than intended.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return &cfg, nil
	case err != nil:
		return nil, err
	default:
		return nil, fmt.Errorf("line %d: unexpected second YAML document", extra.Line)
	}
}

// prefixErrors prefixes every error joined in err, not just the first
// line, so that each problem printed on its own line names its source.
func prefixErrors(prefix string, err error) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	errs := j.Unwrap()
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s: %w", prefix, e)
	}
	return errors.Join(out...)
}

// explain turns a yaml decoding error into one error per problem, naming
// the offending key by its path (e.g. "kafka.listen") where the line
// identifies it, since yaml itself only names Go types.
func explain(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	var keys []keyPos
	if yaml.Unmarshal(data, &root) == nil {
		keys = collectKeys(&root, "", nil)
	}
	errs := make([]error, len(te.Errors))
	for i, msg := range te.Errors {
		errs[i] = errors.New(explainOne(msg, keys))
	}
	return errors.Join(errs...)
}

// keyPos records where the value of one key path sits in the file.
type keyPos struct {
	path    string
	keyLine int // line of the key itself (0 for sequence items)
	line    int // line where the value starts
	kind    yaml.Kind
}

func collectKeys(n *yaml.Node, path string, keys []keyPos) []keyPos {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			keys = collectKeys(c, path, keys)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			keys = append(keys, keyPos{path: p, keyLine: k.Line, line: v.Line, kind: v.Kind})
			keys = collectKeys(v, p, keys)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			keys = append(keys, keyPos{path: p, line: v.Line, kind: v.Kind})
			keys = collectKeys(v, p, keys)
		}
	}
	return keys
}

// explainOne rewrites one yaml.TypeError message, which looks like
// "line 3: field lisen not found in type configs.KafkaConfig" or
// "line 2: cannot unmarshal !!str `abc` into uint64". Messages it cannot
// attribute to exactly one key are returned unchanged.
func explainOne(msg string, keys []keyPos) string {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return msg
	}
	num, detail, ok := strings.Cut(rest, ": ")
	if !ok {
		return msg
	}
	line, err := strconv.Atoi(num)
	if err != nil {
		return msg
	}
	var match []keyPos
	if after, ok := strings.CutPrefix(detail, "field "); ok {
		if name, _, ok := strings.Cut(after, " not found in type "); ok {
			for _, k := range keys {
				if k.keyLine == line && (k.path == name || strings.HasSuffix(k.path, "."+name)) {
					match = append(match, k)
				}
			}
			if len(match) == 1 {
				return fmt.Sprintf("line %d: %s: unknown key", line, match[0].path)
			}
			return fmt.Sprintf("line %d: unknown key %q", line, name)
		}
	}
	if after, ok := strings.CutPrefix(detail, "cannot unmarshal "); ok {
		// The tag tells whether the failing value is a scalar, a mapping
		// or a sequence, which separates a key from its parent on the same
		// line.
		kind := yaml.ScalarNode
		switch {
		case strings.HasPrefix(after, "!!map"):
			kind = yaml.MappingNode
		case strings.HasPrefix(after, "!!seq"):
			kind = yaml.SequenceNode
		}
		for _, k := range keys {
			if k.line == line && k.kind == kind {
				match = append(match, k)
			}
		}
		if len(match) == 1 {
			return fmt.Sprintf("line %d: %s: %s", line, match[0].path, detail)
		}
	}
	return msg
}

// wholeNumbers refuses a fractional number given for an integer setting,
// which yaml would truncate without a word: retention of 1.9 ms would
// become 1 ms, a node id of 1.5 would become 1.
func wholeNumbers(data []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return err
	}
	var errs []error
	var walk func(n *yaml.Node, t reflect.Type, path string)
	walk = func(n *yaml.Node, t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch {
		case n.Kind == yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, t, path)
			}
		case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
			for i := 0; i+1 < len(n.Content); i += 2 {
				for j := range t.NumField() {
					f := t.Field(j)
					if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == n.Content[i].Value {
						walk(n.Content[i+1], f.Type, strings.TrimPrefix(path+"."+name, "."))
					}
				}
			}
		case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
			for i, c := range n.Content {
				walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float":
			if v, err := strconv.ParseFloat(n.Value, 64); err == nil && v == math.Trunc(v) {
				return // 1e3: a whole number, written as a float
			}
			switch t.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				errs = append(errs, fmt.Errorf("line %d: %s: %s is not a whole number", n.Line, path, n.Value))
			}
		}
	}
	walk(&root, reflect.TypeFor[Config](), "")
	return errors.Join(errs...)
}
