package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// errScan is returned for input the scanner does not take apart.
var errScan = errors.New("malformed JSON object")

// maxMembers bounds the members of a header or claims object: this system
// issues ten claims; a token that carries dozens is not one of ours.
const maxMembers = 32

// scanObject calls f with each member of the JSON object b: its name and its
// value as raw JSON. b must already be valid JSON (json.Valid); the scanner
// only splits it, without reflection or allocation, which is most of what
// decoding a token's header and claims costs with encoding/json.
//
// It refuses what JSON readers disagree on: a member name with an escape
// ("\u0072ole", which encoding/json reads as "role"), a name given twice
// (encoding/json keeps the last, others the first), and more than
// maxMembers members.
func scanObject(b []byte, f func(key string, raw []byte) error) error {
	var seen [maxMembers][]byte
	n := 0
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errScan
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for i < len(b) {
		if b[i] != '"' {
			return errScan
		}
		end, err := skipString(b, i)
		if err != nil {
			return err
		}
		key := b[i+1 : end-1]
		if n == maxMembers || bytes.IndexByte(key, '\\') >= 0 {
			return errScan
		}
		for _, k := range seen[:n] {
			if string(k) == string(key) {
				return errScan
			}
		}
		seen[n] = key
		n++
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return errScan
		}
		i = skipWS(b, i+1)
		vEnd, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := f(string(key), b[i:vEnd]); err != nil {
			return err
		}
		i = skipWS(b, vEnd)
		if i >= len(b) {
			return errScan
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return nil
		default:
			return errScan
		}
	}
	return errScan
}

// scanArray calls f with each element of the JSON array b (valid JSON) as
// raw JSON.
func scanArray(b []byte, f func(raw []byte) error) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return errScan
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for i < len(b) {
		end, err := skipValue(b, i)
		if err != nil {
			return err
		}
		if err := f(b[i:end]); err != nil {
			return err
		}
		i = skipWS(b, end)
		if i >= len(b) {
			return errScan
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case ']':
			return nil
		default:
			return errScan
		}
	}
	return errScan
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i].
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errScan
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errScan
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errScan
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
			j++
		}
		return j, nil
	}
}

// jsonString decodes a raw JSON string value of valid UTF-8; ok is false
// for any other JSON type (null included) and for invalid UTF-8, which
// encoding/json would silently replace.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || !utf8.Valid(raw) {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' || c < 0x20 {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil || !utf8.ValidString(s) {
				return "", false
			}
			return s, true
		}
	}
	return string(inner), true
}

// jsonNumber decodes a raw JSON number; ok is false for any other type.
func jsonNumber(raw []byte) (float64, bool) {
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil
}
