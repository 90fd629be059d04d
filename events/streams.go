package events

import "time"

// Stream describes a JetStream stream of the contract; internal/natsx turns
// it into a server configuration.
type Stream struct {
	Name     string
	Subjects []string
	// MaxAge bounds how long a message is kept; zero keeps it forever.
	MaxAge time.Duration
}

// Stream names.
const (
	StreamRevocations = "REVOCATIONS"
	StreamIdentity    = "IDENTITY"
	StreamSessions    = "SESSIONS"
)

// RevocationLeeway is added to the access-token TTL to get the REVOCATIONS
// stream's max age: long enough that an entry outlives every token it
// revokes, short enough that the stream holds exactly the live blocklist.
const RevocationLeeway = time.Minute

// RevocationsStream is the live blocklist, for access tokens of ttl.
func RevocationsStream(accessTokenTTL time.Duration) Stream {
	return Stream{Name: StreamRevocations, Subjects: []string{"revocations.v1.>"}, MaxAge: accessTokenTTL + RevocationLeeway}
}

// IdentityStream carries the erasure pipeline's requests.
func IdentityStream() Stream {
	return Stream{Name: StreamIdentity, Subjects: []string{"identity.v1.>"}}
}

// SessionsMaxAge is how long the SESSIONS stream keeps a message: its
// consumers (the erasure pipeline, notifiers of new sign-ins) read within
// it, and a sign-in's IP and client do not outlive it there, erased or not.
const SessionsMaxAge = 7 * 24 * time.Hour

// SessionsStream carries sessiond's confirmations and sign-ins.
func SessionsStream() Stream {
	return Stream{Name: StreamSessions, Subjects: []string{"sessions.v1.>"}, MaxAge: SessionsMaxAge}
}
