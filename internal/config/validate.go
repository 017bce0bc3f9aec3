package config

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// validator collects errors; at() scopes it to a field path.
type validator struct {
	file  string
	lines map[string]int
	errs  Errors
}

// scope is a validator positioned at one path.
type scope struct {
	v    *validator
	path string
}

func (v *validator) at(path string) scope { return scope{v: v, path: path} }

func (s scope) at(field string) scope {
	if s.path == "" {
		return scope{v: s.v, path: field}
	}
	if strings.HasPrefix(field, "[") {
		return scope{v: s.v, path: s.path + field}
	}
	return scope{v: s.v, path: s.path + "." + field}
}

// errorf records a problem at the scope's path, using the line of the
// nearest enclosing node that appears in the file.
func (s scope) errorf(format string, args ...any) {
	s.v.errs = append(s.v.errs, Error{File: s.v.file, Line: s.v.line(s.path), Path: s.path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) line(path string) int {
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := v.lines[p]; ok {
			return l
		}
	}
	return 0
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// lineIndex maps each field path of the document to its line.
func lineIndex(root *yaml.Node) map[string]int {
	idx := map[string]int{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				idx[p] = k.Line
				walk(val, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				idx[p] = c.Line
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return idx
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// decodeErrors turns yaml.v3's type errors into line-numbered Errors.
func decodeErrors(file string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Errors{yamlError(file, err)}
	}
	var out Errors
	for _, msg := range te.Errors {
		out = append(out, splitLine(file, msg))
	}
	return out
}

func yamlError(file string, err error) Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return splitLine(file, msg)
}

func splitLine(file, msg string) Error {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return Error{File: file, Line: n, Msg: m[2]}
	}
	return Error{File: file, Msg: msg}
}

// errEOF lets an empty document through: it returns err itself when err is
// io.EOF so that errors.Is matches, and a sentinel that never matches
// otherwise.
func errEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	return errNever
}

var errNever = errors.New("never")
