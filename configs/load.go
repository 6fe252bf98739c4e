package configs

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"reflect"
	"slices"
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
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	emptied, err := checkValues(&root)
	if err != nil {
		return nil, err
	}
	if emptied {
		// Decoded again with the empty values in place of the nulls,
		// yaml's own rules decide which value of a key counts (a key set
		// in a mapping beats one merged into it).
		cfg = Default()
		if err := root.Decode(&cfg); err != nil {
			return nil, err
		}
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

// explain turns a yaml decoding error into one error per problem, each
// naming the offending key by its path (e.g. "raft.tick_ms" or
// "peers[1].id"). yaml itself names only the line and a Go type, which
// does not tell apart two keys on one line, as in flow style
// ("raft: {tick_ms: 50, max_size_per_msg: -1}"), so the unknown keys and
// ill-typed values are found again by walking the document alongside
// Config (checkNodes); yaml's other messages, such as a duplicate key, are
// kept as they are.
func explain(data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	var out, typed []lineError
	for _, msg := range te.Errors {
		line, detail := splitLine(msg)
		e := lineError{line, errors.New(msg)}
		if strings.HasPrefix(detail, "field ") && strings.Contains(detail, " not found in type ") ||
			strings.HasPrefix(detail, "cannot unmarshal ") {
			typed = append(typed, e)
		} else {
			out = append(out, e)
		}
	}
	// checkNodes finds the same problems, with their keys; should it ever
	// disagree with yaml, yaml's own messages at least lose none.
	if found := checkNodes(&root); len(found) == len(typed) {
		typed = found
	}
	out = append(out, typed...)
	slices.SortStableFunc(out, func(a, b lineError) int { return cmp.Compare(a.line, b.line) })
	errs := make([]error, len(out))
	for i, e := range out {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

// lineError is an error about the document at one line, kept with the
// line so that errors found in different ways can be reported in order.
type lineError struct {
	line int
	err  error
}

// splitLine splits yaml's "line 3: detail" into 3 and detail; a message
// without a line gets line 0.
func splitLine(msg string) (int, string) {
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, detail, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				return line, detail
			}
		}
	}
	return 0, msg
}

// checkNodes reports every key of the document that names no setting and
// every value that does not decode into its setting's type, as
// "line N: path: problem". It decodes each value on its own, with yaml's
// own rules, so that it refuses exactly what decoding the whole document
// does.
func checkNodes(root *yaml.Node) []lineError {
	var errs []lineError
	walkNodes(root, reflect.TypeFor[Config](), func(n, _ *yaml.Node, t reflect.Type, path string) {
		if t == nil {
			errs = append(errs, lineError{n.Line, fmt.Errorf("line %d: %s: unknown key", n.Line, path)})
			return
		}
		err := n.Decode(reflect.New(t).Interface())
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return
		}
		for _, msg := range te.Errors {
			_, detail := splitLine(msg)
			if path != "" {
				detail = path + ": " + detail
			} // else the document is not a mapping at all
			errs = append(errs, lineError{n.Line, fmt.Errorf("line %d: %s", n.Line, detail)})
		}
	})
	return errs
}

// walkNodes walks the document rooted at n alongside the Go type t and
// calls visit with every value that is not a mapping into a struct nor a
// sequence into a slice (so a scalar, or a value of the wrong kind), with
// the type it decodes into and its YAML path. A key that names no field
// of its struct is visited with its key node and a nil type. Aliases are
// followed, and reported where they are used: n is a copy of the value
// with the line of its use, and at is the node of the document where it
// is used (the value itself, or an alias of it), for a visitor that
// replaces it.
func walkNodes(n *yaml.Node, t reflect.Type, visit func(n, at *yaml.Node, t reflect.Type, path string)) {
	var walk func(n *yaml.Node, t reflect.Type, path string)
	walk = func(n *yaml.Node, t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		v := n
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		switch {
		case v.Kind == yaml.DocumentNode:
			for _, c := range v.Content {
				walk(c, t, path)
			}
		case v.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, val := v.Content[i], v.Content[i+1]
				key := strings.TrimPrefix(path+"."+k.Value, ".")
				if k.ShortTag() == "!!merge" {
					// "<<: *base" merges the keys of base (or of each
					// mapping in a list) into this one.
					if val.Kind == yaml.SequenceNode {
						for _, c := range val.Content {
							walk(c, t, path)
						}
					} else {
						walk(val, t, path)
					}
					continue
				}
				if f, ok := fieldByKey(t, k.Value); ok {
					walk(val, f.Type, key)
				} else {
					visit(k, k, nil, key)
				}
			}
		case v.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
			for i, c := range v.Content {
				walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		default:
			line := *v
			line.Line, line.Column = n.Line, n.Column
			visit(&line, n, t, path)
		}
	}
	walk(n, t, "")
}

// fieldByKey returns the field of struct type t whose yaml tag is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key && name != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// checkValues refuses what yaml decodes without a word but the operator
// cannot have meant: a float for an integer setting that is not a whole
// number in its range (wholeNumber), and a key without a value
// (nullValue). It replaces the nulls of emptyWhenNull's settings in the
// document with the empty string, and reports whether it did.
func checkValues(root *yaml.Node) (emptied bool, err error) {
	var errs []error
	walkNodes(root, reflect.TypeFor[Config](), func(n, at *yaml.Node, t reflect.Type, path string) {
		if t == nil || n.Kind != yaml.ScalarNode {
			return
		}
		var err error
		switch n.ShortTag() {
		case "!!float":
			err = wholeNumber(n, t, path)
		case "!!null":
			if emptyWhenNull[path] {
				*at = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle, Line: n.Line, Column: n.Column}
				emptied = true
				return
			}
			err = nullValue(n, t, path)
		}
		if err != nil {
			errs = append(errs, err)
		}
	})
	return emptied, errors.Join(errs...)
}

// wholeNumber refuses n, a number written as a float, for an integer
// setting of type t unless it is a whole number in the setting's range.
// yaml would truncate a fraction without a word (retention of 1.9 ms would
// become 1 ms, a node id of 1.5 would become 1), and its range check lets
// through a negative float for an unsigned setting and a float of exactly
// 2^63 (2^64 for an unsigned one), which Go converts to an integer wrapped
// around (a snapshot_entries of -1.0 would become 2^64-1).
func wholeNumber(n *yaml.Node, t reflect.Type, path string) error {
	var lo, hi float64 // the setting's range is [lo, hi)
	var least, most string
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := t.Bits()
		lo, hi = -math.Ldexp(1, bits-1), math.Ldexp(1, bits-1)
		least, most = strconv.FormatInt(math.MinInt64>>(64-bits), 10), strconv.FormatInt(math.MaxInt64>>(64-bits), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		bits := t.Bits()
		lo, hi = 0, math.Ldexp(1, bits)
		least, most = "0", strconv.FormatUint(math.MaxUint64>>(64-bits), 10)
	default:
		return nil
	}
	var v float64
	switch err := n.Decode(&v); {
	case err != nil || v != math.Trunc(v): // also NaN
		return fmt.Errorf("line %d: %s: %s is not a whole number", n.Line, path, n.Value)
	case v < lo || v >= hi:
		return fmt.Errorf("line %d: %s: must be between %s and %s, got %s", n.Line, path, least, most, n.Value)
	}
	return nil
}

// emptyWhenNull are the settings for which a key without a value means
// the empty string, which has a meaning of its own: the debug endpoint
// off, the advertised address following kafka.listen. An operator who
// writes "listen:" under debug means it off, as the README has it.
var emptyWhenNull = map[string]bool{"debug.listen": true, "kafka.advertise": true}

// nullValue refuses a key without a value ("data_dir:", "tick_ms: ~")
// for a setting of type t not in emptyWhenNull: yaml leaves the setting at
// its default, which is rarely what an operator who wrote the key meant
// (an empty data_dir would become ./data). A section without keys
// ("debug:", every key commented out) keeps its defaults, as if it were
// left out, and "peers:" without entries is an empty list.
func nullValue(n *yaml.Node, t reflect.Type, path string) error {
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Map:
		return nil
	}
	if def, ok := defaultOf(path); ok {
		return fmt.Errorf("line %d: %s: no value; give one, or leave the key out for the default %s", n.Line, path, def)
	}
	return fmt.Errorf("line %d: %s: no value", n.Line, path)
}

// defaultOf returns the default of the setting at path, as YAML would
// write it; ok is false for a path into a list, whose entries have none.
func defaultOf(path string) (string, bool) {
	v := reflect.ValueOf(Default())
	for key := range strings.SplitSeq(path, ".") {
		f, ok := fieldByKey(v.Type(), key)
		if !ok {
			return "", false
		}
		v = v.FieldByIndex(f.Index)
	}
	if v.Kind() == reflect.String {
		return strconv.Quote(v.String()), true
	}
	return fmt.Sprint(v.Interface()), true
}
