package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// -- the main workflow: path style over http ------------------------------------------------------

var specialKeys = []string{
	"special/with space.txt",
	"special/plus+sign.txt",
	"special/100% sure.txt",
	"special/pct%2Fliteral-not-a-slash.txt",
	"special/q=1&r=2;s=3.txt",
	"special/ünïcödé/日本語 ファイル.txt",
	"special/tilde~star*quote'(paren)!.txt",
	"special/hash#question?.txt",
	"special/colon:at@dollar$comma,.txt",
	"special/lt<gt>amp&quot\".xml",
}

func mainSuite(r *runner) {
	c, hc := newClient(clientOpts{endpoint: cfg.endpoint, access: cfg.access, secret: cfg.secret, pathStyle: true}, r.rec)
	B := cfg.bucket
	MB := []string{"CreateBucket + HeadBucket + ListBuckets"}

	r.step(MB[0], nil, func() {
		createBucket(c, B)
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		out, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		check(err, "ListBuckets")
		found := false
		for _, b := range out.Buckets {
			if aws.ToString(b.Name) == B {
				found = true
				expect(b.CreationDate != nil && time.Since(*b.CreationDate) < time.Hour, "CreationDate %v", b.CreationDate)
			}
		}
		expect(found, "ListBuckets does not list %s", B)
	})

	small := bytes.Repeat([]byte("The AWS SDK for Go v2 was here. "), 64) // 2048 bytes
	PUT := "PutObject with Metadata, ContentType, CacheControl, ContentDisposition + HeadObject"
	r.step(PUT, MB, func() {
		putBytes(c, B, "docs/hello.txt", small, func(in *s3.PutObjectInput) {
			in.ContentType = aws.String("text/plain; charset=utf-8")
			in.CacheControl = aws.String("max-age=300, public")
			in.ContentDisposition = aws.String(`attachment; filename="hello.txt"`)
			in.Metadata = map[string]string{"owner": "team-go", "Mixed-Case": "kept as sent"}
		})
		sent := r.rec.peek()
		expectEq(sent[0].Header.Get("X-Amz-Content-Sha256"), sha256hex(small),
			"x-amz-content-sha256 (over http this SDK signs the payload's SHA-256)")
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: aws.String("docs/hello.txt")})
		check(err, "HeadObject")
		expectEq(h.ContentLength, int64(len(small)), "ContentLength")
		expectEq(aws.ToString(h.ETag), quoted(md5hex(small)), "ETag")
		expectEq(aws.ToString(h.ContentType), "text/plain; charset=utf-8", "ContentType")
		expectEq(aws.ToString(h.CacheControl), "max-age=300, public", "CacheControl")
		expectEq(aws.ToString(h.ContentDisposition), `attachment; filename="hello.txt"`, "ContentDisposition")
		// The SDK sends x-amz-meta-Mixed-Case (canonical header case); S3 keeps metadata names in
		// lower case, and the SDK lower-cases what it reads back.
		expectEq(h.Metadata, map[string]string{"owner": "team-go", "mixed-case": "kept as sent"}, "Metadata")
		expect(h.LastModified != nil && time.Since(*h.LastModified) < time.Hour && time.Until(*h.LastModified) < time.Minute,
			"LastModified %v is not about now", h.LastModified)
		expectEq(aws.ToString(h.AcceptRanges), "bytes", "AcceptRanges")
	})

	r.step("GetObject whole, Range bytes=100-1099, suffix bytes=-500 (ContentRange, bytes)", []string{PUT}, func() {
		got, out := getBytes(c, B, "docs/hello.txt")
		expectEq(got, small, "bytes")
		expectEq(aws.ToString(out.ContentType), "text/plain; charset=utf-8", "ContentType")
		expectEq(out.Metadata["owner"], "team-go", "Metadata owner")
		got, out = getBytes(c, B, "docs/hello.txt", func(in *s3.GetObjectInput) { in.Range = aws.String("bytes=100-1099") })
		expectEq(got, small[100:1100], "bytes of Range bytes=100-1099")
		expectEq(aws.ToString(out.ContentRange), fmt.Sprintf("bytes 100-1099/%d", len(small)), "ContentRange")
		expectEq(out.ContentLength, int64(1000), "ContentLength of the range")
		expectEq(r.rec.peek()[1].Status, 206, "HTTP status of the range")
		got, out = getBytes(c, B, "docs/hello.txt", func(in *s3.GetObjectInput) { in.Range = aws.String("bytes=-500") })
		expectEq(got, small[len(small)-500:], "bytes of suffix Range bytes=-500")
		expectEq(aws.ToString(out.ContentRange), fmt.Sprintf("bytes %d-%d/%d", len(small)-500, len(small)-1, len(small)), "ContentRange")
		got, _ = getBytes(c, B, "docs/hello.txt", func(in *s3.GetObjectInput) { in.Range = aws.String("bytes=2000-999999") })
		expectEq(got, small[2000:], "bytes of a range that ends past the end (clipped)")
	})

	r.step("GetObject of a range past the end: InvalidRange (HTTP 416)", []string{PUT}, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: aws.String("docs/hello.txt"),
			Range: aws.String(fmt.Sprintf("bytes=%d-", len(small)+10))})
		expectAPIError(err, "InvalidRange", 416, "GetObject Range past the end")
	})

	const N = 1010
	manyKeys := make([]string, N)
	for i := range manyKeys {
		manyKeys[i] = fmt.Sprintf("many/k%04d", i)
	}
	MANY := "1010 keys by PutObject from 200 goroutines"
	r.step(MANY, MB, func() {
		ctx, cancel := ctxFor(5 * time.Minute)
		defer cancel()
		work := make(chan int)
		var mu sync.Mutex
		var errs []string
		var wg sync.WaitGroup
		for w := 0; w < 200; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					body := []byte(fmt.Sprintf("object %04d\n", i))
					out, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &B, Key: &manyKeys[i], Body: bytes.NewReader(body)})
					mu.Lock()
					if err != nil {
						errs = append(errs, manyKeys[i]+": "+describe(err))
					} else if aws.ToString(out.ETag) != quoted(md5hex(body)) {
						errs = append(errs, manyKeys[i]+": ETag "+aws.ToString(out.ETag))
					}
					mu.Unlock()
				}
			}()
		}
		for i := 0; i < N; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
		expect(len(errs) == 0, "%d of %d PutObject failed, first: %v", len(errs), N, errs[:min(3, len(errs))])
		most := maxInFlight(r.rec.peek(), isOp("PUT", ""))
		expect(most >= 20, "only %d PutObject in flight at once", most)
	})

	r.step("ListObjectsV2Paginator over 1010 keys (pages of 1000, and of 250 with Limit)", []string{MANY}, func() {
		keys, _, pages := listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("many/")}, 0)
		expectEq(keys, manyKeys, "keys (in order)")
		expectEq(len(pages), 2, "pages with the default MaxKeys (1000)")
		expectEq(pages[0].KeyCount, int32(1000), "KeyCount of page 1")
		expect(pages[0].IsTruncated && !pages[1].IsTruncated, "IsTruncated: %v, %v", pages[0].IsTruncated, pages[1].IsTruncated)
		o := pages[1].Contents[9]
		expectEq(o.Size, int64(len("object 1009\n")), "Size of many/k1009")
		expectEq(aws.ToString(o.ETag), quoted(md5hex([]byte("object 1009\n"))), "ETag of many/k1009 in the listing")
		expect(o.LastModified != nil && time.Since(*o.LastModified) < time.Hour, "LastModified %v", o.LastModified)
		keys, _, pages = listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("many/")}, 250)
		expectEq(keys, manyKeys, "keys (pages of 250)")
		expectEq(len(pages), 5, "pages with Limit 250")
		for i, p := range pages {
			expectEq(p.KeyCount, int32(len(p.Contents)), fmt.Sprintf("KeyCount of page %d", i+1))
			expectEq(p.MaxKeys, int32(250), fmt.Sprintf("MaxKeys of page %d", i+1))
			expectEq(p.IsTruncated, i < 4, fmt.Sprintf("IsTruncated of page %d", i+1))
			if i > 0 {
				expect(aws.ToString(p.ContinuationToken) == aws.ToString(pages[i-1].NextContinuationToken),
					"page %d: ContinuationToken is not the previous NextContinuationToken", i+1)
			}
		}
	})

	r.step("ListObjectsV2 Prefix + Delimiter (CommonPrefixes, paginated by 1), StartAfter", []string{MANY, PUT}, func() {
		tree := []string{"tree/a/1.txt", "tree/a/2.txt", "tree/b/c/3.txt", "tree/top.txt"}
		for _, k := range tree {
			putBytes(c, B, k, []byte(k))
		}
		keys, prefixes, _ := listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("tree/"), Delimiter: aws.String("/")}, 0)
		expectEq(prefixes, []string{"tree/a/", "tree/b/"}, "CommonPrefixes under tree/")
		expectEq(keys, []string{"tree/top.txt"}, "Contents under tree/")
		keys, prefixes, pages := listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("tree/"), Delimiter: aws.String("/")}, 1)
		expectEq(len(pages), 3, "pages of one entry each (prefix or key)")
		expectEq(append(prefixes, keys...), []string{"tree/a/", "tree/b/", "tree/top.txt"}, "entries paginated by 1")
		keys, prefixes, _ = listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Delimiter: aws.String("/")}, 0)
		expectEq(prefixes, []string{"docs/", "many/", "tree/"}, "top-level CommonPrefixes")
		expectEq(len(keys), 0, "top-level Contents")
		keys, _, pages = listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("many/"), StartAfter: aws.String("many/k0999")}, 0)
		expectEq(keys, manyKeys[1000:], "keys after StartAfter many/k0999")
		expectEq(aws.ToString(pages[0].StartAfter), "many/k0999", "StartAfter echoed")
		keys, _, _ = listAll(c, &s3.ListObjectsV2Input{Bucket: &B, StartAfter: aws.String("many/k1009")}, 0)
		expectEq(keys, tree, "keys after the last many/ key")
		keys, _, _ = listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("nothing/")}, 0)
		expectEq(len(keys), 0, "keys under a prefix with nothing")
	})

	big := randomBytes(20*MiB+12345, 20)
	UP := "manager.Uploader 20 MiB multipart (PartSize 5 MiB, Concurrency 3) + manager.Downloader ranged GETs (Concurrency 4): SHA-256 equal"
	r.step(UP, MB, func() {
		uploadDownload(r, c, B, "big/20MiB.bin", big, 5*MiB, "")
	})

	r.step("manager.Uploader of a small body: one PutObject; Downloader into a WriteAtBuffer", MB, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		body := randomBytes(300*1024, 21)
		out, err := manager.NewUploader(c).Upload(ctx, &s3.PutObjectInput{Bucket: &B, Key: aws.String("big/small-via-manager.bin"), Body: bytes.NewReader(body)})
		check(err, "Upload")
		expectEq(out.UploadID, "", "UploadID (a body under PartSize goes as one PutObject)")
		expectEq(aws.ToString(out.ETag), quoted(md5hex(body)), "ETag")
		buf := manager.NewWriteAtBuffer(nil)
		n, err := manager.NewDownloader(c).Download(ctx, buf, &s3.GetObjectInput{Bucket: &B, Key: aws.String("big/small-via-manager.bin")})
		check(err, "Download")
		expectEq(n, int64(len(body)), "bytes downloaded")
		expectEq(sha256hex(buf.Bytes()), sha256hex(body), "SHA-256")
	})

	r.step("CopyObject with MetadataDirective COPY and REPLACE", []string{PUT}, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		src := copySource(B, "docs/hello.txt")
		out, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &B, Key: aws.String("copies/copied.txt"), CopySource: &src})
		check(err, "CopyObject (COPY)")
		expect(out.CopyObjectResult != nil, "no CopyObjectResult")
		expectEq(aws.ToString(out.CopyObjectResult.ETag), quoted(md5hex(small)), "ETag in CopyObjectResult")
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: aws.String("copies/copied.txt")})
		check(err, "HeadObject of the copy")
		expectEq(h.Metadata, map[string]string{"owner": "team-go", "mixed-case": "kept as sent"}, "Metadata copied")
		expectEq(aws.ToString(h.ContentType), "text/plain; charset=utf-8", "ContentType copied")
		expectEq(aws.ToString(h.CacheControl), "max-age=300, public", "CacheControl copied")
		_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &B, Key: aws.String("copies/replaced.txt"), CopySource: &src,
			MetadataDirective: types.MetadataDirectiveReplace, ContentType: aws.String("application/x-replaced"),
			Metadata: map[string]string{"stage": "replaced"}})
		check(err, "CopyObject (REPLACE)")
		h, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: aws.String("copies/replaced.txt")})
		check(err, "HeadObject of the replaced copy")
		expectEq(h.Metadata, map[string]string{"stage": "replaced"}, "Metadata replaced")
		expectEq(aws.ToString(h.ContentType), "application/x-replaced", "ContentType replaced")
		expectEq(aws.ToString(h.CacheControl), "", "CacheControl (not given with REPLACE)")
		got, _ := getBytes(c, B, "copies/replaced.txt")
		expectEq(got, small, "bytes of the copy")
		// A copy onto itself must change something: with REPLACE it is how metadata is edited.
		self := copySource(B, "copies/replaced.txt")
		_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &B, Key: aws.String("copies/replaced.txt"), CopySource: &self})
		expectAPIError(err, "InvalidRequest", 400, "CopyObject onto itself without changes")
		_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &B, Key: aws.String("copies/replaced.txt"), CopySource: &self,
			MetadataDirective: types.MetadataDirectiveReplace, Metadata: map[string]string{"stage": "edited"}})
		check(err, "CopyObject onto itself with REPLACE")
		h, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: aws.String("copies/replaced.txt")})
		check(err, "HeadObject after the metadata edit")
		expectEq(h.Metadata, map[string]string{"stage": "edited"}, "Metadata edited in place")
		missing := copySource(B, "docs/missing.txt")
		_, err = c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &B, Key: aws.String("copies/none.txt"), CopySource: &missing})
		expectAPIError(err, "NoSuchKey", 404, "CopyObject of a missing source")
	})

	r.step("DeleteObjects batch (1010 keys: 1000, then 10 + a missing key in Quiet mode; Content-MD5)", []string{MANY}, func() {
		r.rec.take()
		outs := deleteKeys(c, B, manyKeys[:1000], false)
		expectEq(len(outs[0].Deleted), 1000, "Deleted entries")
		expectEq(aws.ToString(outs[0].Deleted[999].Key), "many/k0999", "last Deleted key")
		outs = deleteKeys(c, B, append(append([]string{}, manyKeys[1000:]...), "many/never-existed"), true)
		expectEq(len(outs[0].Deleted), 0, "Deleted entries in Quiet mode")
		for _, e := range filter(r.rec.peek(), isOp("POST", "delete")) {
			expect(e.Header.Get("Content-Md5") != "", "DeleteObjects sent without Content-MD5 (the SDK adds it: the operation requires a checksum)")
		}
		keys, _, _ := listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("many/")}, 0)
		expectEq(len(keys), 0, "keys left under many/")
	})

	r.step("presigned GET and PUT (NewPresignClient) with net/http: Content-Type signed only with ContentLength (aws-sdk-go-v2#2063); tampered, expired, wrong-header requests refused (403)", []string{PUT}, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		plain := &http.Client{Transport: transport("", "")}
		pc := s3.NewPresignClient(c, s3.WithPresignExpires(15*time.Minute))
		body := randomBytes(100*1024, 51)
		send := func(method, u string, hdr http.Header, body []byte) (int, string, http.Header) {
			req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
			check(err, "NewRequest")
			for k, vs := range hdr {
				if strings.EqualFold(k, "Host") {
					continue
				}
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			resp, err := plain.Do(req)
			check(err, method+" "+u)
			return resp.StatusCode, string(readAll(resp.Body)), resp.Header
		}
		signedHeaders := func(u string) string {
			parsed, err := url.Parse(u)
			check(err, "parsing "+u)
			return parsed.Query().Get("X-Amz-SignedHeaders")
		}
		// ContentType alone: this SDK drops Content-Type from a presigned request without a
		// ContentLength (aws-sdk-go-v2#1475, #2063), so only host is signed and the object gets
		// S3's default type.
		pput, err := pc.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: &B, Key: aws.String("presigned/up load+1.bin"),
			ContentType: aws.String("application/x-presigned")})
		check(err, "PresignPutObject")
		expectEq(pput.Method, "PUT", "presigned method")
		expectEq(signedHeaders(pput.URL), "host", "X-Amz-SignedHeaders with ContentType alone (the SDK drops it)")
		status, text, hdr := send("PUT", pput.URL, pput.SignedHeader, body)
		expectEq(status, 200, "status of the presigned PUT: "+text)
		expectEq(hdr.Get("ETag"), quoted(md5hex(body)), "ETag of the presigned PUT")
		got, out := getBytes(c, B, "presigned/up load+1.bin")
		expectEq(got, body, "bytes put through the presigned URL")
		expectEq(aws.ToString(out.ContentType), "binary/octet-stream", "ContentType of an object PUT without one (S3's default)")
		// With ContentLength too, Content-Type and Content-Length are signed and must be sent.
		pput, err = pc.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: &B, Key: aws.String("presigned/typed.bin"),
			ContentType: aws.String("application/x-presigned"), ContentLength: int64(len(body))})
		check(err, "PresignPutObject with ContentLength")
		expectEq(signedHeaders(pput.URL), "content-length;content-type;host", "X-Amz-SignedHeaders with ContentType and ContentLength")
		expectEq(pput.SignedHeader.Get("Content-Type"), "application/x-presigned", "Content-Type in SignedHeader")
		status, text, _ = send("PUT", pput.URL, pput.SignedHeader, body)
		expectEq(status, 200, "status of the presigned PUT with its signed headers: "+text)
		got, out = getBytes(c, B, "presigned/typed.bin")
		expectEq(got, body, "bytes put through the presigned URL with signed headers")
		expectEq(aws.ToString(out.ContentType), "application/x-presigned", "ContentType signed into the presigned PUT")
		other := pput.SignedHeader.Clone()
		other.Set("Content-Type", "text/plain")
		status, text, _ = send("PUT", pput.URL, other, body)
		expectEq(status, 403, "status of the presigned PUT with another Content-Type than signed")
		expect(strings.Contains(text, "<Code>SignatureDoesNotMatch</Code>"), "body: %s", text)

		pget, err := pc.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: aws.String("presigned/up load+1.bin"),
			ResponseContentDisposition: aws.String(`attachment; filename="download.bin"`)})
		check(err, "PresignGetObject")
		status, text, hdr = send("GET", pget.URL, pget.SignedHeader, nil)
		expectEq(status, 200, "status of the presigned GET")
		expectEq([]byte(text), body, "bytes through the presigned GET")
		expectEq(hdr.Get("Content-Disposition"), `attachment; filename="download.bin"`, "response-content-disposition override")

		u, _ := url.Parse(pget.URL)
		q := u.Query()
		sig := q.Get("X-Amz-Signature")
		flipped := "0"
		if sig[len(sig)-1] == '0' {
			flipped = "1"
		}
		q.Set("X-Amz-Signature", sig[:len(sig)-1]+flipped)
		u.RawQuery = q.Encode()
		status, text, _ = send("GET", u.String(), nil, nil)
		expectEq(status, 403, "status of a presigned GET with a tampered signature")
		expect(strings.Contains(text, "<Code>SignatureDoesNotMatch</Code>"), "body: %s", text)
		u, _ = url.Parse(pget.URL)
		u.RawPath, u.Path = "", strings.Replace(u.Path, "up load+1.bin", "up load+2.bin", 1)
		status, text, _ = send("GET", u.String(), nil, nil)
		expectEq(status, 403, "status of a presigned GET for another key")
		expect(strings.Contains(text, "<Code>SignatureDoesNotMatch</Code>"), "body: %s", text)

		short, err := pc.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: aws.String("presigned/up load+1.bin")},
			s3.WithPresignExpires(time.Second))
		check(err, "PresignGetObject (1 s)")
		time.Sleep(2100 * time.Millisecond)
		status, text, _ = send("GET", short.URL, nil, nil)
		expectEq(status, 403, "status of an expired presigned GET (X-Amz-Expires=1)")
		expect(strings.Contains(text, "<Code>AccessDenied</Code>") && strings.Contains(text, "expired"), "body: %s", text)
	})

	r.step("errors: NoSuchKey, NoSuchBucket, NoSuchUpload (errors.As to types), BucketNotEmpty, InvalidBucketName, SignatureDoesNotMatch, InvalidAccessKeyId", []string{PUT}, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		_, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: aws.String("docs/missing.txt")})
		var nsk *types.NoSuchKey
		expect(errors.As(err, &nsk), "GetObject of a missing key: not a *types.NoSuchKey: %v", describe(err))
		expectAPIError(err, "NoSuchKey", 404, "GetObject of a missing key")
		missing := cfg.bucket + "-missing"
		_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: &missing, Key: aws.String("x")})
		// S3's model lists only NoSuchKey and InvalidObjectState for GetObject: NoSuchBucket
		// comes as a generic smithy.APIError there, and as *types.NoSuchBucket from ListObjectsV2.
		expectAPIError(err, "NoSuchBucket", 404, "GetObject in a missing bucket")
		var nsb *types.NoSuchBucket
		_, err = c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &missing})
		expect(errors.As(err, &nsb), "ListObjectsV2 of a missing bucket: not a *types.NoSuchBucket: %v", describe(err))
		expectAPIError(err, "NoSuchBucket", 404, "ListObjectsV2 of a missing bucket")
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &missing, Key: aws.String("x"), Body: strings.NewReader("x")})
		expectAPIError(err, "NoSuchBucket", 404, "PutObject into a missing bucket")
		_, err = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &B})
		expectAPIError(err, "BucketNotEmpty", 409, "DeleteBucket of a bucket with objects")
		_, err = c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("Bad_Bucket_Name")})
		expectAPIError(err, "InvalidBucketName", 400, "CreateBucket Bad_Bucket_Name")
		_, err = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &B, Key: aws.String("docs/hello.txt"), UploadId: aws.String("no-such-upload")})
		var nsu *types.NoSuchUpload
		expect(errors.As(err, &nsu), "AbortMultipartUpload of an unknown upload: not a *types.NoSuchUpload: %v", describe(err))
		wrong, _ := newClient(clientOpts{endpoint: cfg.endpoint, access: cfg.access, secret: cfg.secret + "x", pathStyle: true}, nil)
		_, err = wrong.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &B})
		expectAPIError(err, "SignatureDoesNotMatch", 403, "ListObjectsV2 with a wrong secret key")
		_, err = wrong.PutObject(ctx, &s3.PutObjectInput{Bucket: &B, Key: aws.String("docs/forged.txt"), Body: bytes.NewReader(small)})
		expectAPIError(err, "SignatureDoesNotMatch", 403, "PutObject with a wrong secret key")
		unknown, _ := newClient(clientOpts{endpoint: cfg.endpoint, access: "AKIDUNKNOWNGOSDK", secret: cfg.secret, pathStyle: true}, nil)
		_, err = unknown.GetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: aws.String("docs/hello.txt")})
		expectAPIError(err, "InvalidAccessKeyId", 403, "GetObject with an unknown access key")
		_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: aws.String("docs/forged.txt")})
		expectAPIError(err, "NotFound", 404, "HeadObject of the refused PutObject's key")
	})

	r.step("HeadObject of a missing key: 404 NotFound (this SDK version gives a generic smithy.APIError, not *types.NotFound)", MB, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: aws.String("docs/missing.txt")})
		expectAPIError(err, "NotFound", 404, "HeadObject of a missing key")
		missing := cfg.bucket + "-missing"
		_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &missing, Key: aws.String("x")})
		expectAPIError(err, "NotFound", 404, "HeadObject in a missing bucket (a HEAD has no body to name NoSuchBucket)")
		_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &missing})
		expectAPIError(err, "NotFound", 404, "HeadBucket of a missing bucket")
	})

	r.step("conditional GET/HEAD: IfNoneMatch -> 304, IfMatch mismatch -> 412, IfModifiedSince / IfUnmodifiedSince", []string{PUT}, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		key := aws.String("docs/hello.txt")
		etag := quoted(md5hex(small))
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: key})
		check(err, "HeadObject")
		lm := *h.LastModified
		_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: key, IfNoneMatch: &etag})
		expectAPIError(err, "NotModified", 304, "GetObject IfNoneMatch the ETag (a 304 is an error to this SDK)")
		_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: key, IfNoneMatch: &etag})
		expectAPIError(err, "NotModified", 304, "HeadObject IfNoneMatch the ETag")
		got, _ := getBytes(c, B, "docs/hello.txt", func(in *s3.GetObjectInput) { in.IfNoneMatch = aws.String(`"0123456789abcdef0123456789abcdef"`) })
		expectEq(got, small, "bytes with IfNoneMatch another ETag")
		_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: key, IfMatch: aws.String(`"0123456789abcdef0123456789abcdef"`)})
		expectAPIError(err, "PreconditionFailed", 412, "GetObject IfMatch another ETag")
		_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: key, IfMatch: aws.String(`"0123456789abcdef0123456789abcdef"`)})
		expectAPIError(err, "PreconditionFailed", 412, "HeadObject IfMatch another ETag")
		got, _ = getBytes(c, B, "docs/hello.txt", func(in *s3.GetObjectInput) { in.IfMatch = &etag })
		expectEq(got, small, "bytes with IfMatch the ETag")
		_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: key, IfModifiedSince: aws.Time(lm)})
		expectAPIError(err, "NotModified", 304, "GetObject IfModifiedSince LastModified")
		got, _ = getBytes(c, B, "docs/hello.txt", func(in *s3.GetObjectInput) { in.IfModifiedSince = aws.Time(lm.Add(-time.Hour)) })
		expectEq(got, small, "bytes with IfModifiedSince an hour before")
		_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: &B, Key: key, IfUnmodifiedSince: aws.Time(lm.Add(-time.Hour))})
		expectAPIError(err, "PreconditionFailed", 412, "GetObject IfUnmodifiedSince an hour before LastModified")
		got, _ = getBytes(c, B, "docs/hello.txt", func(in *s3.GetObjectInput) { in.IfUnmodifiedSince = aws.Time(lm) })
		expectEq(got, small, "bytes with IfUnmodifiedSince LastModified")
	})

	r.step("CreateMultipartUpload + UploadPart + ListParts + AbortMultipartUpload; ListMultipartUploads empty after", MB, func() {
		ctx, cancel := ctxFor(5 * time.Minute)
		defer cancel()
		key := aws.String("mpu/aborted.bin")
		cmu, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &B, Key: key, Metadata: map[string]string{"x": "y"}})
		check(err, "CreateMultipartUpload")
		id := cmu.UploadId
		expect(aws.ToString(id) != "", "no UploadId")
		expectEq(aws.ToString(cmu.Key), *key, "Key")
		parts := [][]byte{randomBytes(5*MiB, 61), randomBytes(MiB+3, 62)}
		for i, p := range parts {
			out, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &B, Key: key, UploadId: id, PartNumber: int32(i + 1), Body: bytes.NewReader(p)})
			check(err, fmt.Sprintf("UploadPart %d", i+1))
			expectEq(aws.ToString(out.ETag), quoted(md5hex(p)), fmt.Sprintf("ETag of part %d", i+1))
		}
		lp, err := c.ListParts(ctx, &s3.ListPartsInput{Bucket: &B, Key: key, UploadId: id})
		check(err, "ListParts")
		expectEq(len(lp.Parts), 2, "parts listed")
		for i, p := range lp.Parts {
			expectEq(p.PartNumber, int32(i+1), "PartNumber")
			expectEq(p.Size, int64(len(parts[i])), fmt.Sprintf("Size of part %d", i+1))
			expectEq(aws.ToString(p.ETag), quoted(md5hex(parts[i])), fmt.Sprintf("ETag of part %d", i+1))
		}
		lu, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &B})
		check(err, "ListMultipartUploads")
		var listed []string
		for _, u := range lu.Uploads {
			listed = append(listed, aws.ToString(u.Key)+" "+aws.ToString(u.UploadId))
		}
		expectEq(listed, []string{*key + " " + *id}, "uploads in progress")
		_, err = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &B, Key: key, UploadId: id})
		check(err, "AbortMultipartUpload")
		lu, err = c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &B})
		check(err, "ListMultipartUploads after the abort")
		expectEq(len(lu.Uploads), 0, "uploads left after AbortMultipartUpload")
		_, err = c.UploadPart(ctx, &s3.UploadPartInput{Bucket: &B, Key: key, UploadId: id, PartNumber: 3, Body: bytes.NewReader(parts[1])})
		expectAPIError(err, "NoSuchUpload", 404, "UploadPart to the aborted upload")
		_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &B, Key: key, UploadId: id,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: 1, ETag: aws.String(quoted(md5hex(parts[0])))}}}})
		expectAPIError(err, "NoSuchUpload", 404, "CompleteMultipartUpload of the aborted upload")
		_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: key})
		expectAPIError(err, "NotFound", 404, "HeadObject of the aborted upload's key")
	})

	r.step("keys with special characters: PutObject, ListObjectsV2 (plain, Delimiter, EncodingType url), GetObject, CopyObject, DeleteObjects", MB, func() {
		ctx, cancel := ctxFor(5 * time.Minute)
		defer cancel()
		for _, k := range specialKeys {
			putBytes(c, B, k, []byte("content of "+k))
		}
		want := append([]string{}, specialKeys...)
		sort.Strings(want)
		keys, _, _ := listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("special/")}, 0)
		expectEq(keys, want, "keys listed (UTF-8 binary order)")
		keys, _, pages := listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("special/"), EncodingType: types.EncodingTypeUrl}, 4)
		expectEq(pages[0].EncodingType, types.EncodingTypeUrl, "EncodingType echoed")
		// This SDK hands back the keys as S3 encoded them (botocore decodes them; the Go SDK v2
		// does not): a Go user decodes them with url.QueryUnescape.
		var decoded []string
		for _, k := range keys {
			d, err := url.QueryUnescape(k)
			check(err, "QueryUnescape "+k)
			decoded = append(decoded, d)
		}
		expectEq(decoded, want, "keys listed with EncodingType url, decoded")
		wantKeys, wantPrefixes := listShape(specialKeys, "special/", "/")
		keys, prefixes, _ := listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("special/"), Delimiter: aws.String("/")}, 0)
		expectEq(prefixes, wantPrefixes, "CommonPrefixes under special/")
		expectEq(keys, wantKeys, "Contents under special/ with Delimiter /")
		keys, _, _ = listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("special/ünïcödé/")}, 0)
		expectEq(keys, []string{"special/ünïcödé/日本語 ファイル.txt"}, "keys under a non-ASCII prefix")
		keys, _, _ = listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("special/q=1&")}, 0)
		expectEq(keys, []string{"special/q=1&r=2;s=3.txt"}, "keys under a prefix with = and &")
		for _, k := range specialKeys {
			got, _ := getBytes(c, B, k)
			expectEq(string(got), "content of "+k, "bytes of "+k)
		}
		src := copySource(B, "special/ünïcödé/日本語 ファイル.txt")
		_, err := c.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &B, Key: aws.String("special-copy/ü+ &%.txt"), CopySource: &src})
		check(err, "CopyObject from a non-ASCII key to a key with + & %")
		got, _ := getBytes(c, B, "special-copy/ü+ &%.txt")
		expectEq(string(got), "content of special/ünïcödé/日本語 ファイル.txt", "bytes of the copy")
		outs := deleteKeys(c, B, append(append([]string{}, specialKeys...), "special-copy/ü+ &%.txt"), false)
		var deleted []string
		for _, d := range outs[0].Deleted {
			deleted = append(deleted, aws.ToString(d.Key))
		}
		sort.Strings(deleted)
		all := append(append([]string{}, want...), "special-copy/ü+ &%.txt")
		sort.Strings(all)
		expectEq(deleted, all, "keys reported Deleted by DeleteObjects")
		keys, _, _ = listAll(c, &s3.ListObjectsV2Input{Bucket: &B, Prefix: aws.String("special")}, 0)
		expectEq(len(keys), 0, "keys left")
	})

	r.step("a key with an empty path segment (special//x.txt): sent unaltered; refused with InvalidArgument as s3serve's README documents (AWS S3 stores it)", MB, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		r.rec.take()
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: &B, Key: aws.String("special//x.txt"), Body: strings.NewReader("x")})
		sent := r.rec.take()
		expectEq(sent[0].Path, "/"+B+"/special//x.txt", "path sent by the SDK")
		expectAPIError(err, "InvalidArgument", 400, "PutObject special//x.txt")
	})

	CRC := "PutObject ChecksumAlgorithm CRC32 (a header over http) + HeadObject/GetObject ChecksumMode ENABLED; a wrong CRC32 -> BadDigest"
	r.step(CRC, MB, func() {
		ctx, cancel := ctxFor(time.Minute)
		defer cancel()
		body := randomBytes(256*1024+7, 41)
		key := aws.String("checksums/crc32.bin")
		r.rec.take()
		out := putBytes(c, B, *key, body, func(in *s3.PutObjectInput) { in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32 })
		expectEq(aws.ToString(out.ChecksumCRC32), crc32b64(body), "ChecksumCRC32 in the PutObject response")
		sent := r.rec.take()[0]
		expectEq(sent.Header.Get("X-Amz-Checksum-Crc32"), crc32b64(body), "x-amz-checksum-crc32 sent")
		expectEq(sent.Header.Get("X-Amz-Sdk-Checksum-Algorithm"), "CRC32", "x-amz-sdk-checksum-algorithm sent")
		expectEq(sent.Header.Get("Content-Encoding"), "", "Content-Encoding (no aws-chunked over http: this SDK computes the header from the seekable body)")
		h, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: key, ChecksumMode: types.ChecksumModeEnabled})
		check(err, "HeadObject ChecksumMode ENABLED")
		expectEq(aws.ToString(h.ChecksumCRC32), crc32b64(body), "ChecksumCRC32 from HeadObject")
		h, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: key})
		check(err, "HeadObject")
		expectEq(aws.ToString(h.ChecksumCRC32), "", "ChecksumCRC32 from HeadObject without ChecksumMode")
		got, gout := getBytes(c, B, *key, func(in *s3.GetObjectInput) { in.ChecksumMode = types.ChecksumModeEnabled })
		expectEq(got, body, "bytes (the SDK validated the CRC32 while reading)")
		expectEq(aws.ToString(gout.ChecksumCRC32), crc32b64(body), "ChecksumCRC32 from GetObject")
		bad := aws.String("checksums/bad-crc32.bin")
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: &B, Key: bad, Body: bytes.NewReader(body), ChecksumCRC32: aws.String(crc32b64([]byte("other")))})
		expectAPIError(err, "BadDigest", 400, "PutObject with a wrong ChecksumCRC32")
		_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &B, Key: bad})
		expectAPIError(err, "NotFound", 404, "HeadObject of the refused upload")
	})

	r.step("manager.Uploader with ChecksumAlgorithm CRC32 (a header per UploadPart): composite checksum in HeadObject", MB, func() {
		uploadDownload(r, c, B, "checksums/multipart-crc32.bin", randomBytes(12*MiB+5, 42), 5*MiB, types.ChecksumAlgorithmCrc32)
	})

	r.step("DeleteObject of each object, DeleteBucket; HeadBucket 404 after", MB, func() {
		ctx, cancel := ctxFor(5 * time.Minute)
		defer cancel()
		keys, _, _ := listAll(c, &s3.ListObjectsV2Input{Bucket: &B}, 0)
		for _, k := range keys {
			_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &B, Key: aws.String(k)})
			check(err, "DeleteObject "+k)
		}
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &B, Key: aws.String("docs/never-existed.txt")})
		check(err, "DeleteObject of a missing key (S3 answers 204)")
		keys, _, _ = listAll(c, &s3.ListObjectsV2Input{Bucket: &B}, 0)
		expectEq(len(keys), 0, "keys left")
		deleteBucket(c, B)
		out, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		check(err, "ListBuckets")
		for _, b := range out.Buckets {
			expect(aws.ToString(b.Name) != B, "ListBuckets still lists %s", B)
		}
	})
	_ = hc
}
