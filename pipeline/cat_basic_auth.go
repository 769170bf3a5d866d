package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"paddock/internal/regfile"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/crypto/bcrypt"
)

// basicAuthFactory checks HTTP Basic credentials against an htpasswd file
// of bcrypt hashes (Apache's htpasswd -B).
func basicAuthFactory() Factory {
	return Filter("HTTP Basic authentication against an htpasswd file of bcrypt hashes", newBasicAuth)
}

const (
	basicAuthDefaultRealm = "Restricted"
	basicAuthDefaultCache = 1024
	// basicAuthMaxHeader bounds the Authorization header decoded: bcrypt
	// reads at most 72 bytes of a password, so nothing longer can be a
	// credential worth a bcrypt run.
	basicAuthMaxHeader = 4096
	// htpasswdMaxBytes bounds the file read at load.
	htpasswdMaxBytes = 16 << 20
	// htpasswdMaxCost bounds bcrypt costs, as htpasswd -C does (4..17):
	// a higher cost makes every check take seconds.
	htpasswdMaxCost = 17
)

// htUser is one htpasswd entry.
type htUser struct {
	name string
	hash []byte
}

type basicAuth struct {
	users     map[string]*htUser
	dummy     []byte   // compared for unknown users: the costliest hash
	challenge []string // WWW-Authenticate value (shared, cap == len)
	cache     *authCache
	log       hclog.Logger
}

func newBasicAuth(c *Config) (Middleware, error) {
	a, err := parseBasicAuthFilter(c)
	if err != nil {
		return nil, err
	}
	return a.wrap, nil
}

func parseBasicAuthFilter(c *Config) (*basicAuth, error) {
	if v, ok := c.Lookup("authfunc"); ok {
		return nil, c.Errorf("authfunc", "authfunc: %q names a Python function (Paste's auth_basic); paddock checks an htpasswd file of bcrypt hashes: set htpasswd = FILE instead", strings.TrimSpace(v))
	}
	file := strings.TrimSpace(c.String("htpasswd", ""))
	if file == "" {
		return nil, c.Errorf("htpasswd", "htpasswd: required: the htpasswd file (bcrypt entries, htpasswd -B)")
	}
	path, err := catResolvePath(c, file)
	if err != nil {
		return nil, catErr(c, "htpasswd", "ValueError", err, "htpasswd: %q", file)
	}
	users, err := readHtpasswd(c, path)
	if err != nil {
		return nil, err
	}
	c.WatchFile(path) // an edit reloads the server, which re-reads it
	realm := c.String("realm", basicAuthDefaultRealm)
	if !validHeaderValue(realm) {
		return nil, c.Errorf("realm", "realm: contains control characters")
	}
	cacheSize, err := c.Int("cache_size", basicAuthDefaultCache)
	if err != nil {
		return nil, err
	}
	if cacheSize < 0 {
		return nil, c.Errorf("cache_size", "cache_size: must not be negative, got %d", cacheSize)
	}
	a := &basicAuth{
		users:     users,
		challenge: []string{`Basic realm="` + quoteRealm(realm) + `", charset="UTF-8"`},
		log:       catLogger(c),
	}
	best := -1
	for _, u := range users {
		if cost, _ := bcrypt.Cost(u.hash); cost > best {
			best, a.dummy = cost, u.hash
		}
	}
	if len(users) == 0 {
		a.dummy = basicAuthDummyHash()
		catLogger(c).Warn("htpasswd file has no users: every request is refused", "file", path)
	}
	if cacheSize > 0 {
		a.cache = newAuthCache(cacheSize)
	}
	return a, nil
}

// basicAuthDummyHash is compared when the file has no users, so that
// case costs a bcrypt run too. It hashes a random password: nothing
// matches it. Made once per process, when first needed.
var basicAuthDummyHash = sync.OnceValue(func() []byte {
	var pw [16]byte
	_, _ = rand.Read(pw[:])
	h, err := bcrypt.GenerateFromPassword(pw[:], bcrypt.DefaultCost)
	if err != nil {
		// Cannot happen with a 16-byte password and the default cost;
		// a malformed hash still rejects every password.
		return []byte("$2y$")
	}
	return h
})

// quoteRealm escapes a realm for a quoted-string.
func quoteRealm(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// readHtpasswd parses an htpasswd file: "user:hash" lines, blank lines
// and "#" comments ignored. Every hash must be bcrypt ($2y$, $2a$, $2b$).
// Errors name the file and line; they never quote a hash or password.
func readHtpasswd(c *Config, path string) (map[string]*htUser, error) {
	where := "htpasswd"
	if p := c.PosOf("htpasswd"); p.File != "" {
		where += " (" + p.String() + ")" // the option naming the file
	}
	fail := func(line int, err error, format string, args ...any) error {
		msg := where + ": " + fmt.Sprintf(format, args...)
		if err != nil {
			msg += ": " + err.Error()
		}
		return &Error{Pos: Pos{File: path, Line: line}, Section: c.Section, Class: "ValueError", Msg: msg, Err: err}
	}
	data, err := regfile.Read(path, htpasswdMaxBytes)
	if err != nil {
		return nil, catErr(c, "htpasswd", "OSError", err, "htpasswd: cannot read the file")
	}
	users := make(map[string]*htUser)
	first := make(map[string]int)
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fail(n, nil, "want user:hash")
		}
		if name == "" {
			return nil, fail(n, nil, "empty user name")
		}
		if !validHeaderValue(name) {
			return nil, fail(n, nil, "user name contains control characters")
		}
		if j, dup := first[name]; dup {
			return nil, fail(n, nil, "user %q is already defined on line %d", name, j)
		}
		if err := checkBcryptHash(hash); err != nil {
			return nil, fail(n, err, "user %q", name)
		}
		first[name] = n
		users[name] = &htUser{name: name, hash: []byte(hash)}
	}
	return users, nil
}

var errHashScheme = errors.New("unsupported password hash")

// checkBcryptHash accepts only bcrypt hashes htpasswd -B writes (and
// their $2a$/$2b$ spellings), with a cost from 4 to 17.
func checkBcryptHash(hash string) error {
	switch {
	case strings.HasPrefix(hash, "$2y$"), strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"):
	case strings.HasPrefix(hash, "$apr1$"):
		return fmt.Errorf("%w: Apache MD5 ($apr1$); only bcrypt is accepted (create entries with htpasswd -B)", errHashScheme)
	case strings.HasPrefix(hash, "{SHA}"):
		return fmt.Errorf("%w: SHA-1 ({SHA}); only bcrypt is accepted (create entries with htpasswd -B)", errHashScheme)
	case strings.HasPrefix(hash, "$"):
		return fmt.Errorf("%w: crypt(3) scheme; only bcrypt ($2y$, $2a$, $2b$) is accepted (create entries with htpasswd -B)", errHashScheme)
	default:
		return fmt.Errorf("%w: not bcrypt (plain text or DES crypt?); only bcrypt is accepted (create entries with htpasswd -B)", errHashScheme)
	}
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		return fmt.Errorf("malformed bcrypt hash: %w", err)
	}
	if len(hash) != 60 {
		return fmt.Errorf("malformed bcrypt hash: %d characters, want 60", len(hash))
	}
	if cost > htpasswdMaxCost {
		return fmt.Errorf("bcrypt cost %d is above %d: every check would take seconds", cost, htpasswdMaxCost)
	}
	return nil
}

func (a *basicAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := a.authenticate(r)
		if u == nil {
			h := w.Header()
			h["Www-Authenticate"] = a.challenge
			catWriteText(w, http.StatusUnauthorized, "401 Unauthorized: valid credentials are required.\n")
			return
		}
		next.ServeHTTP(w, withRemoteUser(r, u.name))
	})
}

// authenticate returns the user whose credentials r carries, or nil.
func (a *basicAuth) authenticate(r *http.Request) *htUser {
	v := r.Header["Authorization"]
	if len(v) == 0 {
		return nil
	}
	if len(v[0]) > basicAuthMaxHeader {
		a.log.Info("basic auth: Authorization header too long", "bytes", len(v[0]), "remote_addr", r.RemoteAddr)
		return nil
	}
	var buf [512]byte
	user, pass, ok := parseBasicAuth(v[0], buf[:0])
	if !ok {
		return nil
	}
	u := a.users[string(user)]
	if a.cache != nil && u != nil && a.cache.has(user, pass) {
		return u
	}
	hash := a.dummy
	if u != nil {
		hash = u.hash
	}
	// Unknown users pay a bcrypt run too, against the costliest hash of
	// the file, so timing does not tell which users exist.
	err := bcrypt.CompareHashAndPassword(hash, pass)
	if u == nil || err != nil {
		a.log.Info("basic auth: rejected credentials", "user", string(user[:min(len(user), 64)]), "known_user", u != nil, "remote_addr", r.RemoteAddr)
		return nil
	}
	if a.cache != nil {
		a.cache.add(user, pass)
	}
	return u
}

// parseBasicAuth decodes "Basic base64(user:password)" exactly as the
// access log's %(u)s atom does (accesslog.basicUser: scheme matched
// case-insensitively, surrounding blanks ignored, standard base64, user
// up to the first colon), so the user logged is the user checked. The
// result points into buf when it is big enough.
func parseBasicAuth(auth string, buf []byte) (user, pass []byte, ok bool) {
	const prefix = "Basic "
	if len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return nil, nil, false
	}
	enc := strings.TrimSpace(auth[len(prefix):])
	n := base64.StdEncoding.DecodedLen(len(enc))
	if n+len(enc) > cap(buf) {
		buf = make([]byte, 0, n+len(enc))
	}
	src := append(buf[:0], enc...)
	dec := buf[len(src) : len(src)+n]
	m, err := base64.StdEncoding.Decode(dec, src)
	if err != nil {
		return nil, nil, false
	}
	return bytes.Cut(dec[:m], []byte{':'})
}

// authCache remembers credentials that passed bcrypt, so a client sending
// them on every request costs one bcrypt run, not one per request (bcrypt
// at cost 10 is tens of milliseconds of CPU). Entries are SHA-256 digests
// of a per-process random key, the user and the password; failures are
// never cached. It is rebuilt with the pipeline, so a reload that changes
// the file forgets everything. When full, an arbitrary entry goes.
type authCache struct {
	mu   sync.Mutex
	max  int
	seen map[[sha256.Size]byte]struct{}
}

// authCacheKey salts the cache digests: without it a memory dump would be
// a table of unsalted SHA-256 password hashes.
var authCacheKey = func() (k [32]byte) {
	_, _ = rand.Read(k[:]) // crypto/rand.Read never fails
	return k
}()

func newAuthCache(size int) *authCache {
	return &authCache{max: size, seen: make(map[[sha256.Size]byte]struct{})}
}

func (c *authCache) digest(user, pass []byte) [sha256.Size]byte {
	var stack [256]byte
	b := append(stack[:0], authCacheKey[:]...)
	b = strconv.AppendInt(b, int64(len(user)), 10)
	b = append(b, ':')
	b = append(b, user...)
	b = append(b, pass...)
	return sha256.Sum256(b)
}

func (c *authCache) has(user, pass []byte) bool {
	d := c.digest(user, pass)
	c.mu.Lock()
	_, ok := c.seen[d]
	c.mu.Unlock()
	return ok
}

func (c *authCache) add(user, pass []byte) {
	d := c.digest(user, pass)
	c.mu.Lock()
	if len(c.seen) >= c.max {
		for k := range c.seen {
			delete(c.seen, k)
			break
		}
	}
	c.seen[d] = struct{}{}
	c.mu.Unlock()
}

// remoteUserKey finds the authenticated user in a request's context.
type remoteUserKey struct{}

// userCtx carries the user basic_auth authenticated.
type userCtx struct {
	context.Context
	user string
}

func (c *userCtx) Value(key any) any {
	if key == (remoteUserKey{}) {
		return &c.user
	}
	return c.Context.Value(key)
}

func (c *userCtx) String() string { return fmt.Sprint(c.Context) + ".WithValue(pipeline.remoteUser)" }

// userRequest is a shallow request copy and its context in one allocation.
type userRequest struct {
	req http.Request
	ctx userCtx
}

func withRemoteUser(r *http.Request, user string) *http.Request {
	u := &userRequest{ctx: userCtx{Context: r.Context(), user: user}}
	u.req = *r.WithContext(&u.ctx)
	return &u.req
}

// RemoteUser returns the user the basic_auth filter authenticated for r
// (CGI's REMOTE_USER), or "".
func RemoteUser(r *http.Request) string {
	if p, ok := r.Context().Value(remoteUserKey{}).(*string); ok {
		return *p
	}
	return ""
}
