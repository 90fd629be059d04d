package sessions

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// conds accumulates AND-ed SQL conditions; each "?" in a condition becomes
// a numbered parameter ($1, $2, …).
type conds struct {
	list []string
	args []any
}

// add appends cond, binding each "?" in it to the next of vals.
func (c *conds) add(cond string, vals ...any) {
	for _, v := range vals {
		c.args = append(c.args, v)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(c.args)), 1)
	}
	c.list = append(c.list, cond)
}

// sql is the WHERE clause body ("TRUE" when empty).
func (c *conds) sql() string {
	if len(c.list) == 0 {
		return "TRUE"
	}
	return strings.Join(c.list, " AND ")
}

// limitArg appends the LIMIT of a keyset page (one row more than limit, to
// know whether another page follows) and returns its parameter ($n).
func (c *conds) limitArg(limit int) string {
	c.args = append(c.args, limit+1)
	return "$" + strconv.Itoa(len(c.args))
}

// pageLimit applies a listing's default and bounds to a requested limit.
func pageLimit(n int) (int, error) {
	if n == 0 {
		return DefaultListLimit, nil
	}
	if n < 1 || n > MaxListLimit {
		return 0, invalid("limit must be between 1 and %d", MaxListLimit)
	}
	return n, nil
}

// trimPage drops the extra row a keyset query fetched and returns the
// cursor after the last row kept ("" on the last page).
func trimPage[T any](rows []T, limit int, cursor func(T) string) ([]T, string) {
	if len(rows) <= limit {
		return rows, ""
	}
	rows = rows[:limit]
	return rows, cursor(rows[limit-1])
}

// A cursor is the (time, id) of the last row of a page, opaque to clients.
func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + "|" + id))
}

var errCursor = invalid("cursor is not one this API returned")

// decodeCursor reads a cursor; valid checks its id.
func decodeCursor(c string, valid func(id string) bool) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", errCursor
	}
	us, id, ok := strings.Cut(string(b), "|")
	if !ok || !valid(id) {
		return time.Time{}, "", errCursor
	}
	n, err := strconv.ParseInt(us, 10, 64)
	if err != nil {
		return time.Time{}, "", errCursor
	}
	return time.UnixMicro(n).UTC(), id, nil
}
