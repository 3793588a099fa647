// Command go_sdk_v2 runs users' workflows with the AWS SDK for Go v2 (service/s3, its SigV4
// signer, its checksum middleware, feature/s3/manager's Uploader and Downloader, the presign
// client) against one S3 endpoint, and prints one JSON line per step on stdout:
//
//	{"step": "...", "result": "pass"|"fail"|"skip", "detail": "...", "seconds": 1.2}
//
// conformance/clients/go_sdk_v2.py builds it (GOPATH mode against Debian's
// golang-github-aws-aws-sdk-go-v2-dev, offline) and turns the lines into the suite's steps.
//
//	go_sdk_v2 -suite main|https|vhost|workers -endpoint URL -bucket NAME [-path-style]
//	          [-ca-file PEM] [-proxy URL] [-workdir DIR] [-region R]
//
// Keys come from -access-key/-secret-key or CONF_ACCESS_KEY/CONF_SECRET_KEY. The client is built
// from s3.Options alone: static credentials, no shared config or credential files, no
// environment proxy, no retries (a failing request is reported rather than retried into a
// pass), so nothing but the endpoint given is ever contacted (no instance metadata).
package main

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

const MiB = 1024 * 1024

type config struct {
	suite, endpoint, bucket, region, caFile, proxy, workdir string
	access, secret                                          string
	pathStyle                                               bool
}

var cfg config

// -- steps -------------------------------------------------------------------------------------

type stepFailure struct{ msg string }

type stepSkip struct{ msg string }

// fail ends the current step as failed.
func fail(format string, args ...interface{}) {
	panic(stepFailure{fmt.Sprintf(format, args...)})
}

func skip(format string, args ...interface{}) {
	panic(stepSkip{fmt.Sprintf(format, args...)})
}

// check fails the step on an unexpected error, saying what was being done.
func check(err error, what string) {
	if err != nil {
		fail("%s: %s", what, describe(err))
	}
}

func expect(cond bool, format string, args ...interface{}) {
	if !cond {
		fail(format, args...)
	}
}

func expectEq(actual, expected interface{}, what string) {
	if !reflect.DeepEqual(actual, expected) {
		fail("%s: expected %s, got %s", what, show(expected), show(actual))
	}
}

func show(v interface{}) string {
	s := fmt.Sprintf("%#v", v)
	if len(s) > 600 {
		s = s[:300] + " [...] " + s[len(s)-300:]
	}
	return s
}

// describe says what a caller of the SDK sees of an error: its text, the smithy API error code
// and the HTTP status.
func describe(err error) string {
	code, status := errInfo(err)
	return fmt.Sprintf("%v [%T; code %q, HTTP %d]", err, err, code, status)
}

func errInfo(err error) (code string, status int) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	return code, status
}

// expectAPIError checks an error as a Go program branches on it: errors.As to smithy.APIError
// (ErrorCode) and to *awshttp.ResponseError (HTTPStatusCode).
func expectAPIError(err error, code string, status int, what string) {
	if err == nil {
		fail("%s: expected an error %s (HTTP %d), got success", what, code, status)
	}
	gotCode, gotStatus := errInfo(err)
	if gotCode != code || gotStatus != status {
		fail("%s: expected code %q HTTP %d, got %s", what, code, status, describe(err))
	}
}

type runner struct {
	out    *json.Encoder
	failed map[string]bool
	rec    *recorder
}

func (r *runner) emit(name, result, detail string, seconds float64) {
	if result == "fail" {
		r.failed[name] = true
	}
	_ = r.out.Encode(map[string]interface{}{"step": name, "result": result, "detail": detail, "seconds": seconds})
}

// step runs fn as one step; a step whose prerequisite failed is reported as not run.
func (r *runner) step(name string, needs []string, fn func()) {
	var broken []string
	for _, n := range needs {
		if r.failed[n] {
			broken = append(broken, n)
		}
	}
	if len(broken) > 0 {
		r.emit(name, "fail", "not run: depends on failed step(s) "+strings.Join(broken, ", "), 0)
		return
	}
	start := time.Now()
	result, detail := "pass", ""
	r.rec.take()
	func() {
		defer func() {
			switch e := recover().(type) {
			case nil:
			case stepFailure:
				result, detail = "fail", e.msg
			case stepSkip:
				result, detail = "skip", e.msg
			default:
				result, detail = "fail", fmt.Sprintf("panic: %v\n%s", e, debug.Stack())
			}
		}()
		fn()
	}()
	if result == "fail" {
		detail += "\nlast requests:\n" + r.rec.tail(6)
	}
	r.emit(name, result, detail, time.Since(start).Seconds())
}

// -- a transport that records what the SDK sends ------------------------------------------------

type exchange struct {
	Method, Host, Path, Query string
	Header                    http.Header
	ContentLength             int64
	Status                    int
	Err                       string
	Start, Headers, End       time.Time // sent, response headers in, response body closed
	bodyTail                  *tailBuffer
}

// BodyTail is the end of the request body as it went on the wire (kept for aws-chunked bodies,
// whose trailer carries the checksum).
func (e *exchange) BodyTail() string {
	if e.bodyTail == nil {
		return ""
	}
	return e.bodyTail.String()
}

type recorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  []*exchange
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := &exchange{
		Method: req.Method, Host: req.Host, Path: req.URL.EscapedPath(), Query: req.URL.RawQuery,
		Header: req.Header.Clone(), ContentLength: req.ContentLength, Start: time.Now(),
	}
	if ex.Host == "" {
		ex.Host = req.URL.Host
	}
	if req.Body != nil && strings.Contains(req.Header.Get("Content-Encoding"), "aws-chunked") {
		ex.bodyTail = &tailBuffer{limit: 512}
		req.Body = &teeTail{ReadCloser: req.Body, tail: ex.bodyTail}
	}
	r.mu.Lock()
	r.log = append(r.log, ex)
	r.mu.Unlock()
	resp, err := r.base.RoundTrip(req)
	now := time.Now()
	r.mu.Lock()
	ex.Headers = now
	if err != nil {
		ex.Err, ex.End = err.Error(), now
	} else {
		ex.Status = resp.StatusCode
	}
	r.mu.Unlock()
	if err == nil {
		resp.Body = &closeHook{ReadCloser: resp.Body, done: func() {
			r.mu.Lock()
			if ex.End.IsZero() {
				ex.End = time.Now()
			}
			r.mu.Unlock()
		}}
	}
	return resp, err
}

// take returns what was recorded since the last call and starts a new log.
func (r *recorder) take() []*exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.log
	r.log = nil
	return got
}

// peek returns what was recorded since the last take, leaving it.
func (r *recorder) peek() []*exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*exchange(nil), r.log...)
}

func (r *recorder) tail(n int) string {
	got := r.peek()
	if len(got) > n {
		got = got[len(got)-n:]
	}
	var b strings.Builder
	for _, e := range got {
		fmt.Fprintf(&b, "  %s %s%s?%s -> %d %s\n", e.Method, e.Host, e.Path, e.Query, e.Status, e.Err)
	}
	return b.String()
}

// maxInFlight is the most requests matching keep that were open at one time (from sending to the
// end of the response body).
func maxInFlight(exs []*exchange, keep func(*exchange) bool) int {
	type ev struct {
		t     time.Time
		delta int
	}
	var evs []ev
	for _, e := range exs {
		if keep(e) {
			end := e.End
			if end.IsZero() {
				end = e.Headers
			}
			evs = append(evs, ev{e.Start, 1}, ev{end, -1})
		}
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].t.Equal(evs[j].t) {
			return evs[i].delta < evs[j].delta
		}
		return evs[i].t.Before(evs[j].t)
	})
	cur, most := 0, 0
	for _, e := range evs {
		cur += e.delta
		if cur > most {
			most = cur
		}
	}
	return most
}

func filter(exs []*exchange, keep func(*exchange) bool) []*exchange {
	var out []*exchange
	for _, e := range exs {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// isOp tells an S3 operation from the recorded request.
func isOp(method string, queryHas string) func(*exchange) bool {
	return func(e *exchange) bool {
		if e.Method != method {
			return false
		}
		if queryHas == "" {
			return true
		}
		q, _ := url.ParseQuery(e.Query)
		_, ok := q[queryHas]
		return ok
	}
}

type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func (t *tailBuffer) Write(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.limit {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.limit:]...)
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

type teeTail struct {
	io.ReadCloser
	tail *tailBuffer
}

func (t *teeTail) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 {
		t.tail.Write(p[:n])
	}
	return n, err
}

type closeHook struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (c *closeHook) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err == io.EOF {
		c.once.Do(c.done)
	}
	return n, err
}

func (c *closeHook) Close() error {
	c.once.Do(c.done)
	return c.ReadCloser.Close()
}

// -- clients -----------------------------------------------------------------------------------

// transport is a plain net/http transport: no proxy from the environment (only -proxy, for the
// virtual-host run), the CA file as the only trusted root when given, else the system roots.
func transport(caFile, proxy string) *http.Transport {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       30 * time.Second,
		TLSHandshakeTimeout:   20 * time.Second,
		ResponseHeaderTimeout: 120 * time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			panic(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			panic("no certificate in " + caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	if proxy != "" {
		u, err := url.Parse(proxy)
		if err != nil {
			panic(err)
		}
		tr.Proxy = http.ProxyURL(u)
	}
	return tr
}

type clientOpts struct {
	endpoint, access, secret, caFile, proxy string
	pathStyle                               bool
}

// newClient builds an S3 client the way a service configured for an S3-compatible endpoint
// does: static credentials, a custom endpoint resolver (this SDK predates BaseEndpoint),
// UsePathStyle, and an HTTP client of its own.
func newClient(o clientOpts, rec *recorder) (*s3.Client, *http.Client) {
	hc := &http.Client{Transport: transport(o.caFile, o.proxy)}
	if rec != nil {
		rec.base = hc.Transport
		hc = &http.Client{Transport: rec}
	}
	client := s3.New(s3.Options{
		Region:           cfg.region,
		Credentials:      credentials.NewStaticCredentialsProvider(o.access, o.secret, ""),
		EndpointResolver: s3.EndpointResolverFromURL(o.endpoint),
		UsePathStyle:     o.pathStyle,
		HTTPClient:       hc,
		Retryer:          aws.NopRetryer{},
	})
	return client, hc
}

// -- data --------------------------------------------------------------------------------------

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readAll(r io.ReadCloser) []byte {
	defer r.Close()
	b, err := io.ReadAll(r)
	check(err, "reading the body")
	return b
}

func ctxFor(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func quoted(s string) string { return `"` + s + `"` }

func main() {
	flag.StringVar(&cfg.suite, "suite", "main", "main, https, https-refused, vhost or workers")
	flag.StringVar(&cfg.endpoint, "endpoint", "", "endpoint URL, e.g. http://127.0.0.1:9000")
	flag.StringVar(&cfg.bucket, "bucket", "", "bucket to create, use and remove")
	flag.StringVar(&cfg.region, "region", "us-east-1", "region")
	flag.StringVar(&cfg.caFile, "ca-file", "", "PEM file of the https endpoint's certificate")
	flag.StringVar(&cfg.proxy, "proxy", "", "HTTP proxy (the loopback virtual-host proxy)")
	flag.StringVar(&cfg.workdir, "workdir", os.TempDir(), "scratch directory")
	flag.StringVar(&cfg.access, "access-key", os.Getenv("CONF_ACCESS_KEY"), "access key")
	flag.StringVar(&cfg.secret, "secret-key", os.Getenv("CONF_SECRET_KEY"), "secret key")
	flag.BoolVar(&cfg.pathStyle, "path-style", true, "path-style addressing (false: virtual-host style)")
	flag.Parse()
	if cfg.endpoint == "" || cfg.bucket == "" || cfg.access == "" {
		fmt.Fprintln(os.Stderr, "go_sdk_v2: -endpoint, -bucket and keys are required")
		os.Exit(2)
	}
	r := &runner{out: json.NewEncoder(os.Stdout), failed: map[string]bool{}, rec: &recorder{}}
	switch cfg.suite {
	case "main":
		mainSuite(r)
	case "https":
		httpsSuite(r)
	case "vhost":
		vhostSuite(r)
	case "workers":
		workersSuite(r)
	default:
		fmt.Fprintln(os.Stderr, "go_sdk_v2: unknown suite "+cfg.suite)
		os.Exit(2)
	}
}
