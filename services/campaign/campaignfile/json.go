package campaignfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// decodeJSON reads data as one JSON value, strictly: a syntax error or a
// key given twice is an error at its line and column. Numbers come out as
// the YAML reader gives them (int, uint64 or float64), so that one check
// serves both.
func decodeJSON(data []byte) (any, error) {
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("%s: %s (read as JSON)", position(data, syn.Offset-1), syn)
		case errors.Is(err, io.EOF) && len(bytes.TrimSpace(data)) == 0:
			return nil, errEmpty
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%s: unexpected end of JSON", position(data, int64(len(bytes.TrimRight(data, " \t\r\n")))))
		}
		return nil, err
	}
	rest := dec.InputOffset()
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		rest += int64(len(data[rest:]) - len(bytes.TrimLeft(data[rest:], " \t\r\n")))
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fmt.Errorf("%s: %s after the end of the campaign", position(data, rest), syn)
		}
		return nil, fmt.Errorf("%s: more than one JSON value: one campaign per file", position(data, rest))
	}
	if err := repeatedKeys(data); err != nil {
		return nil, err
	}
	return numbers(doc), nil
}

// repeatedKeys finds a key given twice in one object of data (valid
// JSON), which encoding/json would take the last of silently.
func repeatedKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type object struct {
		keys  map[string]int64
		inKey bool // the next string token is a key
	}
	var stack []*object
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, &object{keys: map[string]int64{}, inKey: true})
				continue
			case '[':
				stack = append(stack, nil)
				continue
			default:
				stack = stack[:len(stack)-1]
			}
		} else if top != nil && top.inKey {
			k := tok.(string)
			// The key starts after the separator and spaces before it.
			at := start + int64(bytes.IndexByte(data[start:], '"'))
			if first, ok := top.keys[k]; ok {
				return fmt.Errorf("%s: %q appears twice (first at %s)", position(data, at), k, position(data, first))
			}
			top.keys[k] = at
			top.inKey = false
			continue
		}
		// A value ended: in an object, a key comes next.
		if len(stack) > 0 && stack[len(stack)-1] != nil {
			stack[len(stack)-1].inKey = true
		}
	}
}

// position is "line L, column C" of byte offset off of data, both from 1,
// columns in characters.
func position(data []byte, off int64) string {
	off = max(0, min(off, int64(len(data))))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}

// numbers replaces the json.Numbers of v by int when whole and in range,
// else uint64, else float64: what the YAML reader gives.
func numbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = numbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = numbers(e)
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return int(i)
		}
		if u, err := strconv.ParseUint(string(t), 10, 64); err == nil {
			return u
		}
		f, _ := strconv.ParseFloat(string(t), 64)
		return f
	}
	return v
}
