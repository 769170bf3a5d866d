package worker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"paddock/listener"
)

// tlsTestPair writes a pair (writeCert) and returns the settings naming it
// and its bytes.
func tlsTestPair(t *testing.T, serial int64) (*Settings, *TLSPair) {
	t.Helper()
	dir := t.TempDir()
	certfile, keyfile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeCert(t, certfile, keyfile, serial)
	certPEM, err := os.ReadFile(certfile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyfile)
	if err != nil {
		t.Fatal(err)
	}
	return testSettings(t, map[string]string{"certfile": certfile, "keyfile": keyfile}), &TLSPair{Cert: certPEM, Key: keyPEM}
}

// The master's read returns the files' bytes, refuses what the workers
// could not load and non-regular files, and its digest follows the
// contents.
func TestReadTLS(t *testing.T) {
	s, want := tlsTestPair(t, 1)
	got, err := readTLS(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatal("readTLS did not return the files' bytes")
	}
	if p, err := readTLS(testSettings(t, map[string]string{})); p != nil || err != nil {
		t.Errorf("without TLS: %v, %v", p, err)
	}
	_, other := tlsTestPair(t, 2)
	if got.digest() == other.digest() || got.digest() != want.digest() || (*TLSPair)(nil).digest() != "" {
		t.Error("the digest does not follow the contents")
	}

	fifo := filepath.Join(t.TempDir(), "key.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fs := *s
	fs.KeyFile = fifo
	done := make(chan error, 1)
	go func() { _, err := readTLS(&fs); done <- err }()
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("readTLS blocked on a FIFO keyfile")
	}
	if err == nil || !strings.Contains(err.Error(), "keyfile") || !strings.Contains(err.Error(), "FIFO") {
		t.Errorf("FIFO keyfile: %v", err)
	}

	ms := *s
	otherDir := t.TempDir()
	writeCert(t, filepath.Join(otherDir, "c.pem"), filepath.Join(otherDir, "k.pem"), 3)
	ms.KeyFile = filepath.Join(otherDir, "k.pem")
	if _, err := readTLS(&ms); err == nil || !strings.Contains(err.Error(), "certfile") {
		t.Errorf("mismatched pair: %v", err)
	}
}

// The pair's bytes never show in a log line or a formatted message.
func TestTLSPairNeverPrinted(t *testing.T) {
	_, pair := tlsTestPair(t, 1)
	key := string(pair.Key[40:80]) // base64 body of the key
	m := Message{Type: MsgReload, Generation: 2, TLS: pair}
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace})
	log.Info("pair", "tls", pair, "message", m)
	log = hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace, JSONFormat: true})
	log.Info("pair", "tls", pair)
	for _, out := range []string{fmt.Sprint(pair), fmt.Sprintf("%+v %#v %s", pair, pair, pair), fmt.Sprintf("%v %+v", m, m), buf.String()} {
		if strings.Contains(out, key) || strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("key bytes printed: %s", out)
		}
	}

	// A reload line that does not decode is reported without its TLS
	// part, however short the rest.
	line, err := jsonLine(Message{Type: MsgReload, TLS: pair})
	if err != nil {
		t.Fatal(err)
	}
	line = append(bytes.TrimSuffix(line, []byte("}\n")), "garbage\n"...)
	_, err = NewDecoder(bytes.NewReader(line), FromMaster).Next()
	if !errors.Is(err, ErrGarbage) || strings.Contains(err.Error(), `"key"`) || strings.Contains(err.Error(), `"cert"`) {
		t.Errorf("garbage reload line: %v", err)
	}
}

func jsonLine(m Message) ([]byte, error) {
	var buf bytes.Buffer
	err := NewEncoder(&buf).Send(m)
	return buf.Bytes(), err
}

// A new worker gets the TLS pair in its snapshot descriptor, with the
// config files or without them.
func TestConfigSnapshotCarriesTLS(t *testing.T) {
	_, pair := tlsTestPair(t, 1)
	for _, want := range []workerSnapshot{
		{Files: map[string][]byte{"/etc/paddock/paste.ini": []byte("[app:main]\n")}, TLS: pair},
		{TLS: pair},
		{Files: map[string][]byte{"/x.ini": []byte("x")}},
	} {
		f, err := configSnapshot(want)
		if err != nil {
			t.Fatal(err)
		}
		// The worker reads its inherited copy of the descriptor.
		fd, err := syscall.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		got, err := readConfigSnapshot(fd)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("snapshot read back as %v, want %v", got, want)
		}
	}
}

// A reload line carrying the largest config inlined and the largest TLS
// pair fits the reload bound.
func TestReloadMessageFitsTLS(t *testing.T) {
	big := bytes.Repeat([]byte("x"), listener.MaxKeyPairFileSize)
	m := Message{Type: MsgReload, Generation: 1, ConfigSHA256: strings.Repeat("a", 64),
		Files: map[string][]byte{"/etc/paddock/paste.ini": make([]byte, MaxInlineConfig)}, TLS: &TLSPair{Cert: big, Key: big}}
	if _, err := jsonLine(m); err != nil {
		t.Fatal(err)
	}
}

// A worker's listeners serve the pair it was given without opening the
// files (gone here, as a root-only key is to a worker of another user),
// and refuse to start TLS without one.
func TestWrapListenersPairNeverOpensFiles(t *testing.T) {
	s, pair := tlsTestPair(t, 42)
	os.Remove(s.CertFile)
	os.Remove(s.KeyFile)
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	if _, _, err := wrapListenersPair([]net.Listener{listen()}, s, nil, hclog.NewNullLogger()); err == nil || !strings.Contains(err.Error(), "no TLS key pair") {
		t.Errorf("TLS without a pair: %v", err)
	}
	if _, _, err := wrapListeners([]net.Listener{listen()}, s, hclog.NewNullLogger()); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("in-process TLS with the files gone: %v", err)
	}
	ln := listen()
	lns, cert, err := wrapListenersPair([]net.Listener{ln}, s, pair, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer lns[0].Close()
	go func() { // ends when the listener closes
		for {
			c, err := lns[0].Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); got != 42 || cert.Current().Leaf.SerialNumber.Int64() != 42 {
		t.Errorf("served serial %d, want 42", got)
	}
}
