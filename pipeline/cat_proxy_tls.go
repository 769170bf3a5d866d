package pipeline

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
)

// parseProxyTLS reads the options of the TLS client that talks to https://
// upstreams, nginx's proxy_ssl_* in paddock's words. It returns nil when
// none is set, so Go's defaults apply: the system roots, the upstream URL's
// host as server name, no client certificate.
//
// The CA and client certificate files are watched: saving one reloads the
// server, which reads them again (a renewed client certificate is picked
// up without a restart).
func parseProxyTLS(c *Config) (*tls.Config, error) {
	skipVerify, err := c.Bool("tls_insecure_skip_verify", false)
	if err != nil {
		return nil, err
	}
	caFile := strings.TrimSpace(c.String("tls_ca_file", ""))
	serverName := strings.TrimSpace(c.String("tls_server_name", ""))
	certFile := strings.TrimSpace(c.String("tls_cert_file", ""))
	keyFile := strings.TrimSpace(c.String("tls_key_file", ""))
	if !skipVerify && caFile == "" && serverName == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: skipVerify,
	}
	if skipVerify {
		catLogger(c).Warn("tls_insecure_skip_verify: the upstreams' certificates are not verified", "section", c.Section)
	}
	if caFile != "" {
		path, err := catResolvePath(c, caFile)
		if err != nil {
			return nil, catErr(c, "tls_ca_file", "ValueError", err, "tls_ca_file: %q", caFile)
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, catErr(c, "tls_ca_file", "IOError", err, "tls_ca_file")
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, c.Errorf("tls_ca_file", "tls_ca_file: %s holds no PEM certificate", path)
		}
		cfg.RootCAs = pool
		c.WatchFile(path)
	}
	switch {
	case certFile != "" && keyFile == "":
		return nil, c.Errorf("tls_cert_file", "tls_cert_file: needs tls_key_file too")
	case certFile == "" && keyFile != "":
		return nil, c.Errorf("tls_key_file", "tls_key_file: needs tls_cert_file too")
	case certFile != "":
		certPath, err := catResolvePath(c, certFile)
		if err != nil {
			return nil, catErr(c, "tls_cert_file", "ValueError", err, "tls_cert_file: %q", certFile)
		}
		keyPath, err := catResolvePath(c, keyFile)
		if err != nil {
			return nil, catErr(c, "tls_key_file", "ValueError", err, "tls_key_file: %q", keyFile)
		}
		// LoadX509KeyPair's errors name what is wrong, never the key's bytes.
		cert, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return nil, catErr(c, "tls_cert_file", "ValueError", err, "tls_cert_file %s, tls_key_file %s", certPath, keyPath)
		}
		cfg.Certificates = []tls.Certificate{cert}
		c.WatchFile(certPath)
		c.WatchFile(keyPath)
	}
	return cfg, nil
}
