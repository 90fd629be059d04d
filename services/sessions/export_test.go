package sessions

import "context"

// Hooks for this package's external tests (package sessions_test), which
// run the service through sessionstest and look inside it here and there.

// DummyHash is the hash that unknown emails are checked against.
func DummyHash(s *Service) string { return s.dummyHash }

// AcquireHashTurn takes a password hashing turn, as a login would.
func AcquireHashTurn(s *Service) error { return s.hasher.acquire(context.Background()) }

// ReleaseHashTurn gives back a turn that AcquireHashTurn took.
func ReleaseHashTurn(s *Service) { s.hasher.release() }

// HashesWaiting is how many hashes wait for a turn.
func HashesWaiting(s *Service) int {
	s.hasher.mu.Lock()
	defer s.hasher.mu.Unlock()
	return s.hasher.waiting
}

// HashPeak is the most hashes ever computed at once.
func HashPeak(s *Service) int {
	s.hasher.mu.Lock()
	defer s.hasher.mu.Unlock()
	return s.hasher.peak
}

var (
	EncodeCursor    = encodeCursor
	Nullable        = nullable
	NewRefreshToken = newRefreshToken
	HashToken       = hashToken
)

// BulkBatch is how many sessions one transaction of a bulk revocation ends.
const BulkBatch = bulkBatch
