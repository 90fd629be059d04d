package sessions

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// query builds the parameters of one SQL statement and owns their
// numbering: a value gets its $n where the text that uses it is written
// (bind), so no fragment depends on the order in which others bound theirs.
// It also gathers AND-ed conditions (where).
type query struct {
	args  []any
	conds []string
}

// bind adds v as the next parameter and returns how the statement names it ($n).
func (q *query) bind(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// add appends a condition, binding each "?" in it to the next of vals.
func (q *query) add(cond string, vals ...any) {
	for _, v := range vals {
		cond = strings.Replace(cond, "?", q.bind(v), 1)
	}
	q.conds = append(q.conds, cond)
}

// sql is the WHERE clause body ("TRUE" when empty).
func (q *query) sql() string {
	if len(q.conds) == 0 {
		return "TRUE"
	}
	return strings.Join(q.conds, " AND ")
}

// limitArg binds the LIMIT of a keyset page: one row more than limit, to
// know whether another page follows.
func (q *query) limitArg(limit int) string { return q.bind(limit + 1) }

// pageLimit applies a listing's default and bounds to a requested limit.
func pageLimit(n int) (int, error) {
	if n == 0 {
		return defaultListLimit, nil
	}
	if n < 1 || n > MaxListLimit {
		return 0, Invalid("limit must be between 1 and %d", MaxListLimit)
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

var errCursor = Invalid("cursor is not one this API returned")

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
