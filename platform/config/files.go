package config

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// FilePath is how an error shows the path of a file a setting names: quoted,
// unless the file holds a secret and the value does not look like a path.
// Then the value may be the secret itself, given where its file was wanted
// (a key pasted into a *_FILE variable), and only its length is shown. A
// path has a "/" (or "\"), but so has base64: a PEM block's "-----" or
// a line break says the value is no path.
func FilePath(path string, secret bool) string {
	if secret && (!strings.ContainsAny(path, `/\`) || strings.ContainsAny(path, "\r\n") || strings.Contains(path, "-----")) {
		return fmt.Sprintf("the file its value names (%d bytes, not shown: it may be the secret itself, but the setting takes the file's path)", len(path))
	}
	return strconv.Quote(path)
}

// CannotRead says why the file at path, which a setting names, cannot be
// read: `cannot read "/etc/retain/x": no such file or directory`, the path
// shown as FilePath shows it. err is the read's; the path inside a
// *fs.PathError is left out, as FilePath may not show it.
func CannotRead(path string, err error, secret bool) string {
	reason := "cannot be read"
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err.Error()
	} else if err != nil && !secret {
		reason = err.Error()
	}
	return "cannot read " + FilePath(path, secret) + ": " + reason
}
