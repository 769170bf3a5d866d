package listener

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readPair returns the contents of a fresh self-signed pair.
func readPair(t *testing.T) (certfile, keyfile string, certPEM, keyPEM []byte) {
	t.Helper()
	certfile, keyfile, _ = selfSigned(t)
	var err error
	if certPEM, err = os.ReadFile(certfile); err != nil {
		t.Fatal(err)
	}
	if keyPEM, err = os.ReadFile(keyfile); err != nil {
		t.Fatal(err)
	}
	return certfile, keyfile, certPEM, keyPEM
}

// ReadKeyPair returns the files' bytes as they are, and LoadKeyPair is
// ReadKeyPair then ParseKeyPair.
func TestReadKeyPair(t *testing.T) {
	certfile, keyfile, certPEM, keyPEM := readPair(t)
	gotCert, gotKey, err := ReadKeyPair(certfile, keyfile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotCert, certPEM) || !bytes.Equal(gotKey, keyPEM) {
		t.Fatal("ReadKeyPair did not return the files' contents")
	}
	cert, err := ParseKeyPair(certfile, keyfile, gotCert, gotKey)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadKeyPair(certfile, keyfile)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf == nil || !cert.Leaf.Equal(loaded.Leaf) {
		t.Error("ParseKeyPair and LoadKeyPair disagree on the leaf")
	}
}

// A FIFO, a directory or a huge file at certfile or keyfile is refused at
// once, with the file named: a FIFO must not block the reader (the
// master's Run goroutine) until some writer comes.
func TestReadKeyPairRefusesNonRegularFiles(t *testing.T) {
	certfile, keyfile, _ := selfSigned(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, bytes.Repeat([]byte("A"), MaxKeyPairFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cert, key, file, want string
	}{
		{"FIFO certfile", fifo, keyfile, "certfile", "a FIFO"},
		{"FIFO keyfile", certfile, fifo, "keyfile", "a FIFO"},
		{"directory keyfile", certfile, dir, "keyfile", "is a directory"},
		{"huge certfile", big, keyfile, "certfile", "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, _, err := ReadKeyPair(tc.cert, tc.key); done <- err }()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				// Unblock the reader so the test can end: a writer
				// opening the FIFO lets a blocked open return.
				if f, oerr := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); oerr == nil {
					f.Close()
				}
				t.Fatal("ReadKeyPair blocked on a non-regular file")
			}
			var kp *KeyPairError
			if !errors.As(err, &kp) || kp.File != tc.file {
				t.Fatalf("error %v: want a KeyPairError of %s", err, tc.file)
			}
			for _, want := range []string{tc.file, tc.want} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// Errors of ParseKeyPair name the file at fault and never quote its bytes.
func TestParseKeyPairErrors(t *testing.T) {
	certfile, keyfile, certPEM, keyPEM := readPair(t)
	_, _, otherCert, _ := readPair(t)
	secret := base64.StdEncoding.EncodeToString([]byte("SECRET-KEY-MATERIAL-0123456789"))
	badKey := []byte("-----BEGIN EC PRIVATE KEY-----\n" + secret + "\n-----END EC PRIVATE KEY-----\n")
	tests := []struct {
		name      string
		cert, key []byte
		file      string // KeyPairError.File; "" for none (certfile's)
	}{
		{"key does not parse", certPEM, badKey, "keyfile"},
		{"no key at all", certPEM, []byte("not PEM " + secret), "keyfile"},
		{"garbage certificate", []byte("not PEM"), keyPEM, ""},
		{"key of another certificate", otherCert, keyPEM, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKeyPair(certfile, keyfile, tc.cert, tc.key)
			if err == nil {
				t.Fatal("no error")
			}
			var kp *KeyPairError
			if got := errors.As(err, &kp); got != (tc.file != "") || (got && kp.File != tc.file) {
				t.Errorf("error %v: KeyPairError %v, want file %q", err, got, tc.file)
			}
			msg := err.Error()
			for _, want := range []string{certfile, keyfile} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not name %s", msg, want)
				}
			}
			for _, leak := range []string{secret, secret[:12], "SECRET", string(keyPEM[30:50])} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q quotes key bytes %q", msg, leak)
				}
			}
		})
	}
}

// A Certificate built from bytes serves them; StorePEM swaps to new bytes
// from the next handshake on and keeps the old pair when the new one does
// not parse. The files are never opened: they are gone before the
// certificate is built.
func TestCertificatePEM(t *testing.T) {
	certfile, keyfile, certPEM, keyPEM := readPair(t)
	_, _, cert2, key2 := readPair(t)
	os.Remove(certfile)
	os.Remove(keyfile)
	c, err := NewCertificatePEM(certfile, keyfile, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	first := c.Current()
	ln, err := Listen(t.Context(), Spec{TCP, "127.0.0.1:0"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tln := WrapTLS(ln, c.Config([]string{"http/1.1"}))
	defer tln.Close()
	go func() { // ends when tln closes
		for {
			conn, err := tln.Accept()
			if err != nil {
				return
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	served := func() []byte {
		t.Helper()
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	if !bytes.Equal(served(), first.Leaf.Raw) {
		t.Fatal("the handshake did not present the certificate built from the bytes")
	}

	if err := c.StorePEM(cert2, keyPEM); err == nil {
		t.Fatal("StorePEM of a mismatched pair succeeded")
	}
	if c.Current() != first || !bytes.Equal(served(), first.Leaf.Raw) {
		t.Fatal("a failed StorePEM changed the certificate served")
	}
	if err := c.StorePEM(cert2, key2); err != nil {
		t.Fatal(err)
	}
	if now := served(); bytes.Equal(now, first.Leaf.Raw) || !bytes.Equal(now, c.Current().Leaf.Raw) {
		t.Fatal("after StorePEM the handshake still presents the old certificate")
	}

	// LoadPEM parses without serving.
	next, err := c.LoadPEM(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if c.Current() == next || !next.Leaf.Equal(first.Leaf) {
		t.Error("LoadPEM served its result, or parsed something else")
	}
	if _, err := NewCertificatePEM(certfile, keyfile, certPEM, key2); err == nil {
		t.Error("NewCertificatePEM of a mismatched pair succeeded")
	}
}
