// Command mattermost is a stand-in for the Mattermost server binary, used by
// this project's tests where the real release cannot be downloaded. It reads
// the same config.json keys that matter for serving over HTTPS, refuses to
// start where Mattermost refuses, talks to PostgreSQL, and serves a ping
// endpoint, a websocket, and a small web page.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/lib/pq"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.0.0-standin"

// ServiceSettings holds the keys of Mattermost's ServiceSettings that the
// stand-in understands. Defaults are those of Mattermost's model/config.go.
type ServiceSettings struct {
	SiteURL                         string
	ListenAddress                   string
	ConnectionSecurity              string
	TLSCertFile                     string
	TLSKeyFile                      string
	TLSMinVer                       string
	TLSStrictTransport              bool
	TLSStrictTransportMaxAge        int64
	TLSOverwriteCiphers             []string
	UseLetsEncrypt                  bool
	LetsEncryptCertificateCacheFile string
	Forward80To443                  bool
}

// SqlSettings is the database part of the config.
type SqlSettings struct {
	DriverName string
	DataSource string
}

// FileSettings is the file storage part of the config.
type FileSettings struct {
	DriverName string
	Directory  string
}

// Config is the subset of Mattermost's config.json that the stand-in reads.
// Unknown sections and keys in the file are ignored, as Mattermost keeps them.
type Config struct {
	ServiceSettings ServiceSettings
	SqlSettings     SqlSettings
	FileSettings    FileSettings
}

func defaultConfig() Config {
	return Config{
		ServiceSettings: ServiceSettings{
			SiteURL:                         "",
			ListenAddress:                   ":8065",
			ConnectionSecurity:              "",
			TLSMinVer:                       "1.2",
			TLSStrictTransportMaxAge:        63072000,
			TLSOverwriteCiphers:             []string{},
			LetsEncryptCertificateCacheFile: "./config/letsencrypt.cache",
		},
		SqlSettings: SqlSettings{
			DriverName: "postgres",
			DataSource: "postgres://mmuser:mostest@localhost/mattermost_test?sslmode=disable&connect_timeout=10&binary_parameters=yes",
		},
		FileSettings: FileSettings{
			DriverName: "local",
			Directory:  "./data/",
		},
	}
}

// supportedCiphers are the names Mattermost accepts in TLSOverwriteCiphers
// (its ServerTLSSupportedCiphers table): Go's constant names, with the two
// ChaCha20 suites spelt without the "_SHA256" suffix Go's CipherSuites() uses.
var supportedCiphers = map[string]uint16{
	"TLS_RSA_WITH_RC4_128_SHA":                tls.TLS_RSA_WITH_RC4_128_SHA,
	"TLS_RSA_WITH_3DES_EDE_CBC_SHA":           tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
	"TLS_RSA_WITH_AES_128_CBC_SHA":            tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"TLS_RSA_WITH_AES_256_CBC_SHA":            tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	"TLS_RSA_WITH_AES_128_CBC_SHA256":         tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	"TLS_RSA_WITH_AES_128_GCM_SHA256":         tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"TLS_RSA_WITH_AES_256_GCM_SHA384":         tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA":        tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA,
	"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA":    tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA":    tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"TLS_ECDHE_RSA_WITH_RC4_128_SHA":          tls.TLS_ECDHE_RSA_WITH_RC4_128_SHA,
	"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA":     tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
	"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA":      tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA":      tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305":    tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305":  tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,
}

// defaultCiphers is the suite list Mattermost uses when TLSOverwriteCiphers is empty.
var defaultCiphers = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
}

func logInfo(format string, args ...interface{}) {
	fmt.Fprintf(os.Stdout, "%s info  %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

func logWarn(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "%s warn  %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

func logError(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "%s error %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}

// fatal logs and exits with status 1, as Mattermost does when it cannot start.
func fatal(format string, args ...interface{}) {
	logError(format, args...)
	os.Exit(1)
}

func main() {
	cmd, configFlag, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		fmt.Fprintln(os.Stderr, "Usage: mattermost [server|version] [-c|--config PATH]")
		os.Exit(1)
	}
	switch cmd {
	case "version":
		fmt.Printf("Version: %s\n", version)
		fmt.Println("Build Number: standin")
		fmt.Println("Build Enterprise Ready: false")
		return
	case "help":
		fmt.Println("Usage: mattermost [server|version] [-c|--config PATH]")
		return
	}
	runServer(configFlag)
}

func parseArgs(args []string) (cmd, configPath string, err error) {
	cmd = "server"
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-c" || a == "--config":
			if i+1 >= len(args) {
				return "", "", fmt.Errorf("flag needs an argument: %s", a)
			}
			configPath = args[i+1]
			i++
		case strings.HasPrefix(a, "--config="):
			configPath = strings.TrimPrefix(a, "--config=")
		case strings.HasPrefix(a, "-c="):
			configPath = strings.TrimPrefix(a, "-c=")
		case a == "version" || a == "server":
			cmd = a
		case a == "-h" || a == "--help" || a == "help":
			cmd = "help"
		default:
			return "", "", fmt.Errorf("unknown command or flag %q", a)
		}
	}
	return cmd, configPath, nil
}

// installDir is the release's top directory: the binary's parent's parent.
func installDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "."
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Dir(filepath.Dir(exe))
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func findConfigFile(flagPath string) (string, error) {
	if flagPath != "" {
		return filepath.Abs(flagPath)
	}
	if env := os.Getenv("MM_CONFIG"); env != "" {
		return filepath.Abs(env)
	}
	if fileExists(filepath.Join("config", "config.json")) {
		return filepath.Abs(filepath.Join("config", "config.json"))
	}
	p := filepath.Join(installDir(), "config", "config.json")
	if fileExists(p) {
		return p, nil
	}
	return "", errors.New("config file not found: looked for ./config/config.json and " + p + " (use -c PATH or MM_CONFIG)")
}

func loadConfig(path string) (Config, error) {
	cfg := defaultConfig()
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("failed to load configuration: %w", err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("failed to load configuration: parsing %s: %w", path, err)
	}
	if cfg.ServiceSettings.TLSOverwriteCiphers == nil {
		cfg.ServiceSettings.TLSOverwriteCiphers = []string{}
	}
	return cfg, nil
}

// applyEnvOverrides sets every key for which MM_<SECTION>_<KEY> is set, the
// way Mattermost's environment overrides work. Lists are space separated.
func applyEnvOverrides(cfg *Config) ([]string, error) {
	var applied []string
	root := reflect.ValueOf(cfg).Elem()
	for i := 0; i < root.NumField(); i++ {
		section := root.Type().Field(i).Name
		sv := root.Field(i)
		for j := 0; j < sv.NumField(); j++ {
			key := sv.Type().Field(j).Name
			name := "MM_" + strings.ToUpper(section) + "_" + strings.ToUpper(key)
			val, ok := os.LookupEnv(name)
			if !ok {
				continue
			}
			f := sv.Field(j)
			switch f.Kind() {
			case reflect.String:
				f.SetString(val)
			case reflect.Bool:
				b, err := strconv.ParseBool(val)
				if err != nil {
					return nil, fmt.Errorf("environment %s=%q is not a boolean", name, val)
				}
				f.SetBool(b)
			case reflect.Int, reflect.Int64:
				n, err := strconv.ParseInt(val, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("environment %s=%q is not an integer", name, val)
				}
				f.SetInt(n)
			case reflect.Slice:
				f.Set(reflect.ValueOf(strings.Fields(val)))
			}
			applied = append(applied, name)
		}
	}
	return applied, nil
}

// configError is a refusal to start, named like Mattermost's error ids.
type configError struct {
	setting string
	id      string
	detail  string
}

func (e *configError) Error() string {
	return fmt.Sprintf("invalid config: %s: %s (Config.IsValid: %s)", e.setting, e.detail, e.id)
}

func isDomainName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validate mirrors the checks in Mattermost's Config.IsValid for the keys the
// stand-in reads, in the order Mattermost makes them (Sql, File, Service).
func validate(cfg *Config) error {
	sq := cfg.SqlSettings
	if sq.DriverName != "postgres" && sq.DriverName != "mysql" {
		return &configError{"SqlSettings.DriverName", "model.config.is_valid.sql_driver.app_error", fmt.Sprintf("driver %q is not supported (postgres or mysql)", sq.DriverName)}
	}
	if sq.DataSource == "" {
		return &configError{"SqlSettings.DataSource", "model.config.is_valid.sql_data_src.app_error", "data source is empty"}
	}
	if sq.DriverName == "mysql" {
		return &configError{"SqlSettings.DriverName", "standin.sql_driver_mysql", "the stand-in only speaks PostgreSQL"}
	}
	fs := cfg.FileSettings
	if fs.DriverName != "local" && fs.DriverName != "amazons3" {
		return &configError{"FileSettings.DriverName", "model.config.is_valid.file_driver.app_error", fmt.Sprintf("driver %q is not local or amazons3", fs.DriverName)}
	}
	if fs.Directory == "" {
		return &configError{"FileSettings.Directory", "model.config.is_valid.directory.app_error", "directory is empty"}
	}
	ss := cfg.ServiceSettings
	if ss.ConnectionSecurity != "" && ss.ConnectionSecurity != "TLS" {
		return &configError{"ServiceSettings.ConnectionSecurity", "model.config.is_valid.webserver_security.app_error", fmt.Sprintf("%q is not \"\" or \"TLS\"", ss.ConnectionSecurity)}
	}
	if ss.ConnectionSecurity == "TLS" && !ss.UseLetsEncrypt {
		if ss.TLSCertFile == "" {
			return &configError{"ServiceSettings.TLSCertFile", "model.config.is_valid.tls_cert_file_missing.app_error", "TLS is on, Let's Encrypt is off, and no certificate file is set"}
		} else if _, err := os.Stat(ss.TLSCertFile); os.IsNotExist(err) {
			return &configError{"ServiceSettings.TLSCertFile", "model.config.is_valid.tls_cert_file_missing.app_error", fmt.Sprintf("certificate file %s does not exist", ss.TLSCertFile)}
		}
		if ss.TLSKeyFile == "" {
			return &configError{"ServiceSettings.TLSKeyFile", "model.config.is_valid.tls_key_file_missing.app_error", "TLS is on, Let's Encrypt is off, and no key file is set"}
		} else if _, err := os.Stat(ss.TLSKeyFile); os.IsNotExist(err) {
			return &configError{"ServiceSettings.TLSKeyFile", "model.config.is_valid.tls_key_file_missing.app_error", fmt.Sprintf("key file %s does not exist", ss.TLSKeyFile)}
		}
	}
	for _, c := range ss.TLSOverwriteCiphers {
		if _, ok := supportedCiphers[c]; !ok {
			return &configError{"ServiceSettings.TLSOverwriteCiphers", "model.config.is_valid.tls_overwrite_cipher.app_error", fmt.Sprintf("unknown cipher %q", c)}
		}
	}
	if ss.SiteURL != "" {
		if _, err := url.ParseRequestURI(ss.SiteURL); err != nil {
			return &configError{"ServiceSettings.SiteURL", "model.config.is_valid.site_url.app_error", fmt.Sprintf("%q must be a valid URL and start with http:// or https:// (%v)", ss.SiteURL, err)}
		}
	}
	host, port, _ := net.SplitHostPort(ss.ListenAddress)
	validHost := host == "" || net.ParseIP(host) != nil || isDomainName(host)
	portNum, err := strconv.Atoi(port)
	if err != nil || !validHost || portNum < 0 || portNum > 65535 {
		return &configError{"ServiceSettings.ListenAddress", "model.config.is_valid.listen_address.app_error", fmt.Sprintf("%q is not a valid host:port", ss.ListenAddress)}
	}
	return nil
}

// serverState is what the handlers need, and what /api/v4/standin/info shows.
type serverState struct {
	cfg        Config
	configPath string
	db         *sql.DB
	clientDir  string
	dataDir    string
	leCacheDir string
	mu         sync.Mutex
	listeners  []string
	wsConns    map[net.Conn]struct{}
}

func (s *serverState) addListener(desc string) {
	s.mu.Lock()
	s.listeners = append(s.listeners, desc)
	s.mu.Unlock()
}

func connectDB(ds string) *sql.DB {
	db, err := sql.Open("postgres", ds)
	if err != nil {
		fatal("failed to initialize platform: cannot create store: %v", err)
	}
	retry := 30 * time.Second
	if v := os.Getenv("STANDIN_DB_RETRY_SECONDS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 {
			retry = time.Duration(n) * time.Second
		}
	}
	deadline := time.Now().Add(retry)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err == nil {
			return db
		}
		if time.Now().After(deadline) {
			fatal("failed to initialize platform: cannot create store: error pinging the database (SqlSettings.DataSource): %v", err)
		}
		logWarn("Error pinging the database, retrying in 1 second: %v", err)
		time.Sleep(time.Second)
	}
}

func recordStart(db *sql.DB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS standin_starts (version text, started_at timestamptz DEFAULT now())`); err != nil {
		fatal("failed to initialize platform: creating table standin_starts: %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO standin_starts (version) VALUES ($1)`, version); err != nil {
		fatal("failed to initialize platform: inserting into standin_starts: %v", err)
	}
}

// prepareDataDir creates the local file store and checks it can be written.
// Mattermost only logs "Problem with file storage settings" here; the
// stand-in is stricter and refuses to start.
func prepareDataDir(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		fatal("FileSettings.Directory %q: %v", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		fatal("Problem with file storage settings: FileSettings.Directory %s cannot be created: %v", abs, err)
	}
	f, err := os.CreateTemp(abs, ".standin-write-test-*")
	if err != nil {
		fatal("Problem with file storage settings: FileSettings.Directory %s is not writable: %v", abs, err)
	}
	name := f.Name()
	_, werr := f.WriteString("working")
	cerr := f.Close()
	_ = os.Remove(name)
	if werr != nil || cerr != nil {
		fatal("Problem with file storage settings: FileSettings.Directory %s is not writable: %v %v", abs, werr, cerr)
	}
	return abs
}

func findClientDir() string {
	if st, err := os.Stat("client"); err == nil && st.IsDir() {
		if abs, err := filepath.Abs("client"); err == nil {
			return abs
		}
	}
	return filepath.Join(installDir(), "client")
}

func runServer(configFlag string) {
	configPath, err := findConfigFile(configFlag)
	if err != nil {
		fatal("%v", err)
	}
	cfg, err := loadConfig(configPath)
	if err != nil {
		fatal("%v", err)
	}
	applied, err := applyEnvOverrides(&cfg)
	if err != nil {
		fatal("failed to load configuration: %v", err)
	}
	logInfo("Mattermost stand-in %s starting, config %s", version, configPath)
	if len(applied) > 0 {
		logInfo("environment overrides: %s", strings.Join(applied, " "))
	}
	if err := validate(&cfg); err != nil {
		fatal("failed to load configuration: %v", err)
	}
	ss := cfg.ServiceSettings

	st := &serverState{cfg: cfg, configPath: configPath, clientDir: findClientDir(), wsConns: map[net.Conn]struct{}{}}

	st.db = connectDB(cfg.SqlSettings.DataSource)
	recordStart(st.db)
	logInfo("connected to the database and recorded the start in standin_starts")

	if cfg.FileSettings.DriverName == "local" {
		st.dataDir = prepareDataDir(cfg.FileSettings.Directory)
		logInfo("file store: local directory %s", st.dataDir)
	}

	useTLS := ss.ConnectionSecurity == "TLS"

	// Mattermost's order: bind, then the Forward80To443 checks, then TLS.
	addr := ss.ListenAddress
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		fatal("Error starting server: api.server.start_server.starting.critical: %v", err)
	}
	mode := "http"
	if useTLS {
		mode = "tls"
	}
	logInfo("listening on %s (%s)", addr, mode)
	logInfo("Server is listening on %s", listener.Addr().String())
	st.addListener(fmt.Sprintf("%s (%s)", listener.Addr().String(), mode))

	var redirectServer *http.Server
	if ss.Forward80To443 {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			logError("Unable to setup forwarding: %v", err)
		} else if port != "443" {
			fatal("Error starting server: ServiceSettings.Forward80To443 is true but ServiceSettings.ListenAddress listens on port %s, not 443 (api.server.start_server.forward80to443.enabled_but_listening_on_wrong_port)", port)
		} else {
			redirectServer = startRedirect(st, net.JoinHostPort(host, "80"))
		}
	} else if ss.UseLetsEncrypt {
		fatal("Error starting server: ServiceSettings.UseLetsEncrypt is true but ServiceSettings.Forward80To443 is false; Let's Encrypt needs port 80 forwarded (api.server.start_server.forward80to443.disabled_while_using_lets_encrypt)")
	}

	var tlsConfig *tls.Config
	if useTLS {
		tlsConfig = buildTLSConfig(st)
	}

	srv := &http.Server{
		Handler:      st.routes(),
		ReadTimeout:  300 * time.Second,
		WriteTimeout: 300 * time.Second,
		IdleTimeout:  60 * time.Second,
	}
	serveErr := make(chan error, 1)
	go func() {
		if useTLS {
			srv.TLSConfig = tlsConfig
			serveErr <- srv.ServeTLS(listener, "", "")
		} else {
			serveErr <- srv.Serve(listener)
		}
	}()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-serveErr:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			fatal("Error starting server: %v", err)
		}
	case sig := <-sigs:
		logInfo("received %v, stopping the server", sig)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st.closeWebsockets()
		_ = srv.Shutdown(ctx)
		if redirectServer != nil {
			_ = redirectServer.Shutdown(ctx)
		}
		cancel()
		_ = st.db.Close()
		logInfo("Server stopped")
		os.Exit(0)
	}
}

func buildTLSConfig(st *serverState) *tls.Config {
	ss := st.cfg.ServiceSettings
	tc := &tls.Config{
		CurvePreferences: []tls.CurveID{tls.CurveP521, tls.CurveP384, tls.CurveP256},
	}
	switch ss.TLSMinVer {
	case "1.0":
		tc.MinVersion = tls.VersionTLS10
	case "1.1":
		tc.MinVersion = tls.VersionTLS11
	case "1.2":
		tc.MinVersion = tls.VersionTLS12
	default:
		// Mattermost knows only 1.0, 1.1 and 1.2 and silently uses 1.2 for
		// anything else, "1.3" included. The stand-in does the same, loudly.
		logWarn("ServiceSettings.TLSMinVer %q is not 1.0, 1.1 or 1.2; Mattermost uses TLS 1.2 as the minimum then, and so does the stand-in", ss.TLSMinVer)
		tc.MinVersion = tls.VersionTLS12
	}
	if len(ss.TLSOverwriteCiphers) == 0 {
		tc.CipherSuites = defaultCiphers
	} else {
		for _, name := range ss.TLSOverwriteCiphers {
			tc.CipherSuites = append(tc.CipherSuites, supportedCiphers[name])
		}
	}
	if ss.UseLetsEncrypt {
		st.leCacheDir = ss.LetsEncryptCertificateCacheFile
		if abs, err := filepath.Abs(st.leCacheDir); err == nil {
			st.leCacheDir = abs
		}
		if err := os.MkdirAll(st.leCacheDir, 0o700); err != nil {
			fatal("Error starting server: ServiceSettings.LetsEncryptCertificateCacheFile %s: %v", st.leCacheDir, err)
		}
		logInfo("Let's Encrypt: certificate cache directory %s (the stand-in has no ACME client)", st.leCacheDir)
		tc.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			logWarn("TLS handshake for %q: stand-in: no ACME client", hello.ServerName)
			return nil, errors.New("stand-in: no ACME client")
		}
		tc.NextProtos = append(tc.NextProtos, "h2")
	} else {
		cert, err := tls.LoadX509KeyPair(ss.TLSCertFile, ss.TLSKeyFile)
		if err != nil {
			fatal("Error starting server: loading ServiceSettings.TLSCertFile %s / ServiceSettings.TLSKeyFile %s: %v", ss.TLSCertFile, ss.TLSKeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc
}

func stripPort(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func startRedirect(st *serverState, addr string) *http.Server {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		logError("Unable to setup forwarding: %v", err)
		return nil
	}
	logInfo("listening on %s (redirect to https)", addr)
	st.addListener(fmt.Sprintf("%s (redirect)", l.Addr().String()))
	le := st.cfg.ServiceSettings.UseLetsEncrypt
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if le && strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			http.Error(w, "stand-in: no ACME client", http.StatusNotFound)
			return
		}
		http.Redirect(w, r, "https://"+stripPort(r.Host)+r.URL.RequestURI(), http.StatusMovedPermanently)
	})}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logError("Failed to serve redirect from port 80 to 443: %v", err)
		}
	}()
	return srv
}

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *serverState) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v4/system/ping", s.handlePing)
	mux.HandleFunc("/api/v4/websocket", s.handleWebsocket)
	mux.HandleFunc("/api/v4/users/websocket", s.handleWebsocket)
	mux.HandleFunc("/api/v4/standin/info", s.handleInfo)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]interface{}{"id": "api.context.404.app_error", "message": "Sorry, we could not find the page.", "status_code": 404})
	})
	mux.HandleFunc("/", s.handleStatic)
	ss := s.cfg.ServiceSettings
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version-Id", version)
		if ss.TLSStrictTransport {
			w.Header().Set("Strict-Transport-Security", fmt.Sprintf("max-age=%d", ss.TLSStrictTransportMaxAge))
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *serverState) handlePing(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"status": "method not allowed"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		logError("ping: database check failed: %v", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"status": "UNHEALTHY"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK", "version": version, "ActiveSearchBackend": "database"})
}

func (s *serverState) handleInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	listeners := append([]string(nil), s.listeners...)
	s.mu.Unlock()
	ss := s.cfg.ServiceSettings
	minVer := ss.TLSMinVer
	if minVer != "1.0" && minVer != "1.1" {
		minVer = "1.2"
	}
	writeJSON(w, http.StatusOK, map[string]interface{}{
		"version":               version,
		"pid":                   os.Getpid(),
		"uid":                   os.Getuid(),
		"euid":                  os.Geteuid(),
		"gid":                   os.Getgid(),
		"listen_address":        ss.ListenAddress,
		"listeners":             listeners,
		"config_file":           s.configPath,
		"tls":                   ss.ConnectionSecurity == "TLS",
		"tls_min_version":       minVer,
		"tls_ciphers":           ss.TLSOverwriteCiphers,
		"strict_transport":      ss.TLSStrictTransport,
		"site_url":              ss.SiteURL,
		"use_lets_encrypt":      ss.UseLetsEncrypt,
		"letsencrypt_cache_dir": s.leCacheDir,
		"forward_80_to_443":     ss.Forward80To443,
		"file_driver":           s.cfg.FileSettings.DriverName,
		"data_directory":        s.dataDir,
		"client_directory":      s.clientDir,
		"request_proto":         r.Proto,
		"request_tls":           r.TLS != nil,
	})
}

func (s *serverState) handleStatic(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rel := filepath.FromSlash(strings.TrimPrefix(filepath.ToSlash(filepath.Clean("/"+r.URL.Path)), "/"))
	p := filepath.Join(s.clientDir, rel)
	if rel == "" || rel == "." || !fileExists(p) {
		p = filepath.Join(s.clientDir, "index.html")
		w.Header().Set("Cache-Control", "no-cache, max-age=31556926, public")
	}
	http.ServeFile(w, r, p)
}

// originAllowed mirrors Mattermost's default websocket origin check: without
// SiteURL the Origin's host must equal the request's Host; with SiteURL the
// Origin's scheme and host must equal SiteURL's.
func (s *serverState) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if origin == "null" {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	site := s.cfg.ServiceSettings.SiteURL
	if site == "" {
		return strings.EqualFold(u.Host, r.Host)
	}
	su, err := url.Parse(site)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, su.Host) && strings.EqualFold(u.Scheme, su.Scheme)
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func (s *serverState) handleWebsocket(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "websocket: method not GET", http.StatusMethodNotAllowed)
		return
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		logWarn("websocket %s: not a websocket upgrade (Connection=%q Upgrade=%q, proto %s); is the proxy passing Upgrade/Connection?", r.URL.Path, r.Header.Get("Connection"), r.Header.Get("Upgrade"), r.Proto)
		http.Error(w, "websocket: the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header", http.StatusBadRequest)
		return
	}
	if r.Header.Get("Sec-Websocket-Version") != "13" {
		http.Error(w, "websocket: unsupported version: 13 not found in 'Sec-Websocket-Version' header", http.StatusBadRequest)
		return
	}
	key := r.Header.Get("Sec-Websocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		http.Error(w, "websocket: not a websocket handshake: 'Sec-WebSocket-Key' header must be Base64 encoded value of 16-byte in length", http.StatusBadRequest)
		return
	}
	if !s.originAllowed(r) {
		logWarn("websocket: request origin %q not allowed for host %q (SiteURL %q)", r.Header.Get("Origin"), r.Host, s.cfg.ServiceSettings.SiteURL)
		http.Error(w, "websocket: request origin not allowed by Upgrader.CheckOrigin", http.StatusForbidden)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "websocket: response does not implement http.Hijacker", http.StatusInternalServerError)
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		logError("websocket: hijack: %v", err)
		return
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	accept := base64.StdEncoding.EncodeToString(sum[:])
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n"
	if _, err := conn.Write([]byte(resp)); err != nil {
		conn.Close()
		return
	}
	s.mu.Lock()
	s.wsConns[conn] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.wsConns, conn)
		s.mu.Unlock()
		conn.Close()
	}()
	_ = conn.SetDeadline(time.Time{})
	s.serveWebsocket(conn, brw.Reader, r)
}

func (s *serverState) closeWebsockets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.wsConns {
		_ = writeFrame(c, 0x8, closePayload(1001, "server shutting down"))
		c.Close()
	}
}

func closePayload(code uint16, reason string) []byte {
	b := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(b, code)
	return append(b, reason...)
}

// writeFrame writes one unmasked, final frame (servers never mask).
func writeFrame(w io.Writer, opcode byte, payload []byte) error {
	hdr := []byte{0x80 | opcode}
	n := len(payload)
	switch {
	case n < 126:
		hdr = append(hdr, byte(n))
	case n <= 0xFFFF:
		hdr = append(hdr, 126, byte(n>>8), byte(n))
	default:
		hdr = append(hdr, 127)
		var ext [8]byte
		binary.BigEndian.PutUint64(ext[:], uint64(n))
		hdr = append(hdr, ext[:]...)
	}
	_, err := w.Write(append(hdr, payload...))
	return err
}

type wsFrame struct {
	fin     bool
	opcode  byte
	payload []byte
}

const maxWSMessage = 1 << 20

var errProtocol = errors.New("websocket protocol error")
var errTooBig = errors.New("websocket message too big")

func readFrame(r *bufio.Reader) (wsFrame, error) {
	var f wsFrame
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return f, err
	}
	f.fin = h[0]&0x80 != 0
	if h[0]&0x70 != 0 {
		return f, errProtocol // no extensions were negotiated
	}
	f.opcode = h[0] & 0x0F
	masked := h[1]&0x80 != 0
	if !masked {
		return f, errProtocol // RFC 6455 5.1: client frames must be masked
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if f.opcode >= 0x8 && (n > 125 || !f.fin) {
		return f, errProtocol
	}
	if n > maxWSMessage {
		return f, errTooBig
	}
	var mask [4]byte
	if _, err := io.ReadFull(r, mask[:]); err != nil {
		return f, err
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, err
	}
	for i := range f.payload {
		f.payload[i] ^= mask[i%4]
	}
	return f, nil
}

func randomID() string {
	var b [13]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "standin"
	}
	return hex.EncodeToString(b[:])
}

func (s *serverState) serveWebsocket(conn net.Conn, br *bufio.Reader, r *http.Request) {
	connID := randomID()
	logInfo("websocket %s opened from %s (connection %s)", r.URL.Path, r.RemoteAddr, connID)
	hello, _ := json.Marshal(map[string]interface{}{
		"event": "hello",
		"data": map[string]interface{}{
			"connection_id":  connID,
			"server_version": version,
		},
		"broadcast": map[string]interface{}{"omit_users": nil, "user_id": "", "channel_id": "", "team_id": ""},
		"seq":       0,
	})
	if err := writeFrame(conn, 0x1, hello); err != nil {
		return
	}
	var msg []byte
	var msgOp byte
	for {
		f, err := readFrame(br)
		if err != nil {
			switch {
			case errors.Is(err, errProtocol):
				_ = writeFrame(conn, 0x8, closePayload(1002, "protocol error"))
			case errors.Is(err, errTooBig):
				_ = writeFrame(conn, 0x8, closePayload(1009, "message too big"))
			}
			logInfo("websocket connection %s ended: %v", connID, err)
			return
		}
		switch f.opcode {
		case 0x0: // continuation
			if msgOp == 0 {
				_ = writeFrame(conn, 0x8, closePayload(1002, "unexpected continuation"))
				return
			}
			msg = append(msg, f.payload...)
		case 0x1, 0x2:
			if msgOp != 0 {
				_ = writeFrame(conn, 0x8, closePayload(1002, "expected continuation"))
				return
			}
			msgOp = f.opcode
			msg = append([]byte(nil), f.payload...)
		case 0x8:
			code := uint16(1000)
			if len(f.payload) >= 2 {
				code = binary.BigEndian.Uint16(f.payload[:2])
			}
			_ = writeFrame(conn, 0x8, closePayload(code, ""))
			logInfo("websocket connection %s closed by the client (code %d)", connID, code)
			return
		case 0x9:
			if err := writeFrame(conn, 0xA, f.payload); err != nil {
				return
			}
			continue
		case 0xA:
			continue
		default:
			_ = writeFrame(conn, 0x8, closePayload(1002, "unknown opcode"))
			return
		}
		if len(msg) > maxWSMessage {
			_ = writeFrame(conn, 0x8, closePayload(1009, "message too big"))
			return
		}
		if !f.fin {
			continue
		}
		var out []byte
		var action struct {
			Action string `json:"action"`
			Seq    int64  `json:"seq"`
		}
		if msgOp == 0x1 && json.Unmarshal(msg, &action) == nil && action.Action != "" {
			// Mattermost answers every client action with its status and the action's sequence number.
			out, _ = json.Marshal(map[string]interface{}{"status": "OK", "seq_reply": action.Seq})
		} else if msgOp == 0x1 {
			out = append([]byte("echo:"), msg...)
		} else {
			out = msg
		}
		if err := writeFrame(conn, msgOp, out); err != nil {
			return
		}
		msg, msgOp = nil, 0
	}
}
