package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// -- https: the CA file as the only trusted root ----------------------------------------------------

func httpsSuite(r *runner) {
	if cfg.caFile == "" {
		r.step("https: all steps", nil, func() { skip("no CA file for the https endpoint") })
		return
	}
	c, _ := newClient(clientOpts{endpoint: cfg.endpoint, access: cfg.access, secret: cfg.secret, caFile: cfg.caFile, pathStyle: true}, r.rec)
	B := cfg.bucket
	MB := []string{"https (the CA file as the only root): CreateBucket, PutObject (UNSIGNED-PAYLOAD over TLS), GetObject"}
	r.step(MB[0], nil, func() {
		createBucket(c, B)
		body := randomBytes(64*1024, 71)
		r.rec.take()
		putBytes(c, B, "tls/plain.bin", body)
		sent := r.rec.take()[0]
		expectEq(sent.Header.Get("X-Amz-Content-Sha256"), "UNSIGNED-PAYLOAD", "x-amz-content-sha256 over TLS (this SDK does not hash the payload over https)")
		got, _ := getBytes(c, B, "tls/plain.bin")
		expectEq(got, body, "bytes over https")
	})

	r.step("https: PutObject ChecksumAlgorithm CRC32 -> aws-chunked body, STREAMING-UNSIGNED-PAYLOAD-TRAILER, x-amz-checksum-crc32 trailer; HeadObject ChecksumMode; an empty body -> header", MB, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		body := randomBytes(MiB+3, 72)
		r.rec.take()
		out := putBytes(c, B, "tls/crc32.bin", body, func(in *s3.PutObjectInput) { in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32 })
		expectEq(aws.ToString(out.ChecksumCRC32), crc32b64(body), "ChecksumCRC32 in the response")
		sent := r.rec.take()[0]
		expectEq(sent.Header.Get("Content-Encoding"), "aws-chunked", "Content-Encoding")
		expectEq(sent.Header.Get("X-Amz-Content-Sha256"), "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-content-sha256")
		expectEq(sent.Header.Get("X-Amz-Trailer"), "x-amz-checksum-crc32", "x-amz-trailer")
		expectEq(sent.Header.Get("X-Amz-Decoded-Content-Length"), fmt.Sprint(len(body)), "x-amz-decoded-content-length")
		expectEq(sent.Header.Get("X-Amz-Checksum-Crc32"), "", "x-amz-checksum-crc32 header (it goes in the trailer)")
		expect(strings.Contains(sent.BodyTail(), "0\r\nx-amz-checksum-crc32:"+crc32b64(body)+"\r\n"),
			"the body does not end with the last chunk and the trailer x-amz-checksum-crc32:%s: %q", crc32b64(body), sent.BodyTail())
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: aws.String("tls/crc32.bin"), ChecksumMode: types.ChecksumModeEnabled})
		check(err, "HeadObject")
		expectEq(h.ContentLength, int64(len(body)), "ContentLength (decoded, not the aws-chunked length)")
		expectEq(aws.ToString(h.ChecksumCRC32), crc32b64(body), "ChecksumCRC32 stored")
		expectEq(aws.ToString(h.ContentEncoding), "", "ContentEncoding stored (aws-chunked is not kept)")
		got, _ := getBytes(c, B, "tls/crc32.bin", func(in *s3.GetObjectInput) { in.ChecksumMode = types.ChecksumModeEnabled })
		expectEq(got, body, "bytes (validated by the SDK)")
		r.rec.take()
		out = putBytes(c, B, "tls/empty.bin", []byte{}, func(in *s3.PutObjectInput) { in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32 })
		sent = r.rec.take()[0]
		expectEq(sent.Header.Get("X-Amz-Checksum-Crc32"), "AAAAAA==", "x-amz-checksum-crc32 header of an empty body")
		expectEq(sent.Header.Get("Content-Encoding"), "", "Content-Encoding of an empty body")
		expectEq(aws.ToString(out.ChecksumCRC32), "AAAAAA==", "ChecksumCRC32 of an empty body")
	})

	r.step("https: manager.Uploader 20 MiB with ChecksumAlgorithm CRC32 (an aws-chunked trailer per part) + Downloader: SHA-256, composite checksum", MB, func() {
		uploadDownload(r, c, B, "tls/20MiB.bin", randomBytes(20*MiB+77, 73), 5*MiB, types.ChecksumAlgorithmCrc32)
	})

	r.step("https: presigned GET fetched with net/http trusting the CA file", MB, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		pget, err := s3.NewPresignClient(c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: aws.String("tls/plain.bin")})
		check(err, "PresignGetObject")
		expect(strings.HasPrefix(pget.URL, "https://"), "presigned URL %s", pget.URL)
		resp, err := (&http.Client{Transport: transport(cfg.caFile, "")}).Get(pget.URL)
		check(err, "GET")
		got := readAll(resp.Body)
		expectEq(resp.StatusCode, 200, "status")
		expectEq(sha256hex(got), sha256hex(randomBytes(64*1024, 71)), "SHA-256 through the presigned URL")
	})

	r.step("https without the CA file (system roots): refused, x509.UnknownAuthorityError", MB, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		untrusted, _ := newClient(clientOpts{endpoint: cfg.endpoint, access: cfg.access, secret: cfg.secret, pathStyle: true}, nil)
		_, err := untrusted.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &B})
		var uae x509.UnknownAuthorityError
		expect(errors.As(err, &uae), "ListObjectsV2 over https without the CA: expected x509.UnknownAuthorityError, got %v", err)
	})

	r.step("https: DeleteObjects, DeleteBucket", MB, func() {
		emptyBucket(c, B)
		deleteBucket(c, B)
	})
}

// -- virtual-host style through the loopback proxy -------------------------------------------------

func vhostSuite(r *runner) {
	c, _ := newClient(clientOpts{endpoint: cfg.endpoint, access: cfg.access, secret: cfg.secret, proxy: cfg.proxy, pathStyle: false}, r.rec)
	B := cfg.bucket
	ep, _ := url.Parse(cfg.endpoint)
	wantHost := B + "." + ep.Host
	// Every request names the bucket in the Host and not in the path.
	hostsOK := func() {
		for _, e := range r.rec.peek() {
			if e.Method == "GET" && e.Path == "/" && e.Query == "x-id=ListBuckets" {
				continue
			}
			expect(e.Host == wantHost, "%s %s went to Host %s, not %s", e.Method, e.Path, e.Host, wantHost)
			expect(!strings.HasPrefix(e.Path, "/"+B), "%s %s: the bucket is in the path", e.Method, e.Path)
		}
	}
	MB := []string{"virtual-host style (UsePathStyle false, through the loopback proxy): CreateBucket, PutObject, ListObjectsV2, GetObject Range, CopyObject"}
	body := randomBytes(100*1024, 81)
	r.step(MB[0], nil, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		createBucket(c, B)
		putBytes(c, B, "v/one.bin", body, func(in *s3.PutObjectInput) { in.Metadata = map[string]string{"style": "vhost"} })
		putBytes(c, B, "v/two words.txt", []byte("two"))
		keys, _, _ := listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("v/")}, 1)
		expectEq(keys, []string{"v/one.bin", "v/two words.txt"}, "keys (pages of one)")
		got, _ := getBytes(c, B, "v/one.bin", func(in *s3.GetObjectInput) { in.Range = aws.String("bytes=10-19") })
		expectEq(got, body[10:20], "ranged bytes")
		src := copySource(B, "v/one.bin")
		_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &B, Key: aws.String("v/copy.bin"), CopySource: &src})
		check(err, "CopyObject")
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: aws.String("v/copy.bin")})
		check(err, "HeadObject of the copy")
		expectEq(h.Metadata, map[string]string{"style": "vhost"}, "Metadata of the copy")
		hostsOK()
	})

	r.step("virtual-host style: manager.Uploader 12 MiB multipart + Downloader: SHA-256 equal", MB, func() {
		uploadDownload(r, c, B, "v/12MiB.bin", randomBytes(12*MiB+9, 82), 5*MiB, "")
		hostsOK()
	})

	r.step("virtual-host style: a presigned GET names the bucket in the host; fetched through the proxy", MB, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		pget, err := s3.NewPresignClient(c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: aws.String("v/one.bin")})
		check(err, "PresignGetObject")
		u, _ := url.Parse(pget.URL)
		expectEq(u.Host, wantHost, "host of the presigned URL")
		resp, err := (&http.Client{Transport: transport("", cfg.proxy)}).Get(pget.URL)
		check(err, "GET through the proxy")
		got := readAll(resp.Body)
		expectEq(resp.StatusCode, 200, "status")
		expectEq(got, body, "bytes through the presigned URL")
	})

	r.step("virtual-host style: DeleteObjects, DeleteBucket", MB, func() {
		emptyBucket(c, B)
		deleteBucket(c, B)
		hostsOK()
	})
}

// -- several server processes on one root ------------------------------------------------------------

func workersSuite(r *runner) {
	c, _ := newClient(clientOpts{endpoint: cfg.endpoint, access: cfg.access, secret: cfg.secret, pathStyle: true}, r.rec)
	B := cfg.bucket
	MB := []string{"--workers 2: CreateBucket"}
	r.step(MB[0], nil, func() { createBucket(c, B) })
	r.step("--workers 2: manager.Uploader 20 MiB (parts spread over the processes) + Downloader: SHA-256 equal", MB, func() {
		uploadDownload(r, c, B, "w/20MiB.bin", randomBytes(20*MiB+1, 91), 5*MiB, "")
	})
	r.step("--workers 2: 300 PutObject from 100 goroutines, then ListObjectsV2Paginator and GetObject of each", MB, func() {
		ctx, cancel := ctxFor(5 * time.Minute)
		defer cancel()
		var keys []string
		for i := 0; i < 300; i++ {
			keys = append(keys, fmt.Sprintf("w/many/%03d", i))
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []string
		work := make(chan string)
		for w := 0; w < 100; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range work {
					_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &B, Key: aws.String(k), Body: bytes.NewReader([]byte(k))})
					if err == nil {
						var out *s3.GetObjectOutput
						out, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: aws.String(k)})
						if err == nil {
							if got := readAll(out.Body); string(got) != k {
								err = fmt.Errorf("read back %q", got)
							}
						}
					}
					if err != nil {
						mu.Lock()
						errs = append(errs, k+": "+describe(err))
						mu.Unlock()
					}
				}
			}()
		}
		for _, k := range keys {
			work <- k
		}
		close(work)
		wg.Wait()
		expect(len(errs) == 0, "%d failed, first: %v", len(errs), errs[:min(3, len(errs))])
		listed, _, _ := listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("w/many/")}, 100)
		expectEq(listed, keys, "keys listed")
	})
	r.step("--workers 2: DeleteObjects, DeleteBucket", MB, func() {
		emptyBucket(c, B)
		deleteBucket(c, B)
	})
}
