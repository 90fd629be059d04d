// Package migrations holds the numbered plain-SQL schema migrations, applied
// with goose by `revokectl migrate` in production and automatically by the
// dev stack and the test helpers.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
