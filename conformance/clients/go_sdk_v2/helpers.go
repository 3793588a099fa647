package main

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// -- helpers shared by the suites ----------------------------------------------------------------

func crc32raw(b []byte) []byte {
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], crc32.ChecksumIEEE(b))
	return out[:]
}

func crc32b64(b []byte) string { return base64.StdEncoding.EncodeToString(crc32raw(b)) }

// splitParts cuts data into the parts of a multipart upload of partSize (the last one shorter).
func splitParts(data []byte, partSize int) [][]byte {
	var parts [][]byte
	for off := 0; off < len(data); off += partSize {
		parts = append(parts, data[off:min(off+partSize, len(data))])
	}
	return parts
}

// compositeCRC32 is S3's checksum of a multipart object uploaded with CRC32: the CRC32 of the
// parts' CRC32s, then "-" and the number of parts.
func compositeCRC32(data []byte, partSize int) string {
	var concat []byte
	parts := splitParts(data, partSize)
	for _, part := range parts {
		concat = append(concat, crc32raw(part)...)
	}
	return fmt.Sprintf("%s-%d", crc32b64(concat), len(parts))
}

// multipartETag is S3's ETag of a multipart object: the MD5 of the parts' MD5s, "-", the count.
func multipartETag(data []byte, partSize int) string {
	var concat []byte
	parts := splitParts(data, partSize)
	for _, part := range parts {
		s := md5.Sum(part)
		concat = append(concat, s[:]...)
	}
	return quoted(fmt.Sprintf("%s-%d", md5hex(concat), len(parts)))
}

// copySource is x-amz-copy-source as S3 wants it: "bucket/key", percent-encoded (this SDK
// leaves the encoding to the caller), each path segment on its own so that "/" stays.
func copySource(bucket, key string) string {
	parts := strings.Split(bucket+"/"+key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

func getBytes(c *s3.Client, bucket, key string, mod ...func(*s3.GetObjectInput)) ([]byte, *s3.GetObjectOutput) {
	ctx, cancel := ctxFor(5 * time.Minute)
	defer cancel()
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &key}
	for _, m := range mod {
		m(in)
	}
	out, err := c.GetObject(ctx, in)
	check(err, "GetObject "+key)
	return readAll(out.Body), out
}

func putBytes(c *s3.Client, bucket, key string, body []byte, mod ...func(*s3.PutObjectInput)) *s3.PutObjectOutput {
	ctx, cancel := ctxFor(5 * time.Minute)
	defer cancel()
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)}
	for _, m := range mod {
		m(in)
	}
	out, err := c.PutObject(ctx, in)
	check(err, "PutObject "+key)
	expectEq(aws.ToString(out.ETag), quoted(md5hex(body)), "ETag of "+key)
	return out
}

// listAll lists with the paginator; returns the keys and the pages' key counts.
func listAll(c *s3.Client, in *s3.ListObjectsV2Input, limit int32) (keys []string, prefixes []string, pages []*s3.ListObjectsV2Output) {
	ctx, cancel := ctxFor(5 * time.Minute)
	defer cancel()
	p := s3.NewListObjectsV2Paginator(c, in, func(o *s3.ListObjectsV2PaginatorOptions) {
		if limit > 0 {
			o.Limit = limit
		}
		o.StopOnDuplicateToken = true
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		check(err, fmt.Sprintf("ListObjectsV2 page %d", len(pages)+1))
		pages = append(pages, page)
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
		for _, cp := range page.CommonPrefixes {
			prefixes = append(prefixes, aws.ToString(cp.Prefix))
		}
		expect(len(pages) < 1000, "paginator does not end")
	}
	return keys, prefixes, pages
}

// emptyBucket deletes every object with DeleteObjects batches of up to 1000 keys.
func emptyBucket(c *s3.Client, bucket string) {
	keys, _, _ := listAll(c, &s3.ListObjectsV2Input{Bucket: &bucket}, 0)
	deleteKeys(c, bucket, keys, false)
}

func deleteKeys(c *s3.Client, bucket string, keys []string, quiet bool) []*s3.DeleteObjectsOutput {
	ctx, cancel := ctxFor(5 * time.Minute)
	defer cancel()
	var outs []*s3.DeleteObjectsOutput
	for off := 0; off < len(keys); off += 1000 {
		end := off + 1000
		if end > len(keys) {
			end = len(keys)
		}
		var ids []types.ObjectIdentifier
		for _, k := range keys[off:end] {
			ids = append(ids, types.ObjectIdentifier{Key: aws.String(k)})
		}
		out, err := c.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &bucket, Delete: &types.Delete{Objects: ids, Quiet: quiet},
		})
		check(err, "DeleteObjects")
		expectEq(len(out.Errors), 0, fmt.Sprintf("DeleteObjects errors (%v)", out.Errors))
		outs = append(outs, out)
	}
	return outs
}

func deleteBucket(c *s3.Client, bucket string) {
	ctx, cancel := ctxFor(time.Minute)
	defer cancel()
	_, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &bucket})
	check(err, "DeleteBucket")
	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
	expectAPIError(err, "NotFound", 404, "HeadBucket after DeleteBucket")
}

func createBucket(c *s3.Client, bucket string) {
	ctx, cancel := ctxFor(time.Minute)
	defer cancel()
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket})
	check(err, "CreateBucket")
	_, err = c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &bucket})
	check(err, "HeadBucket")
}

// uploadDownload is the transfer manager round trip: Uploader (multipart, parts in parallel),
// HeadObject, Downloader (ranged GETs in parallel) into a file, SHA-256 compared; the recorded
// requests show the parts and ranges and how many were in flight at once.
func uploadDownload(r *runner, c *s3.Client, bucket, key string, data []byte, partSize int, alg types.ChecksumAlgorithm) {
	ctx, cancel := ctxFor(10 * time.Minute)
	defer cancel()
	nparts := (len(data) + partSize - 1) / partSize
	r.rec.take()
	up := manager.NewUploader(c, func(u *manager.Uploader) {
		u.PartSize = int64(partSize)
		u.Concurrency = 3
	})
	out, err := up.Upload(ctx, &s3.PutObjectInput{
		Bucket: &bucket, Key: &key, Body: bytes.NewReader(data),
		ContentType: aws.String("application/x-go-sdk-v2"), Metadata: map[string]string{"origin": "manager.Uploader"},
		ChecksumAlgorithm: alg,
	})
	check(err, "manager.Uploader.Upload")
	sent := r.rec.take()
	expect(out.UploadID != "", "Upload did not use multipart (no UploadID)")
	expectEq(aws.ToString(out.ETag), multipartETag(data, partSize), "ETag of the multipart object")
	parts := filter(sent, isOp("PUT", "partNumber"))
	expectEq(len(filter(sent, isOp("POST", "uploads"))), 1, "CreateMultipartUpload requests")
	expectEq(len(parts), nparts, "UploadPart requests")
	expectEq(len(filter(sent, isOp("POST", "uploadId"))), 1, "CompleteMultipartUpload requests")
	if most := maxInFlight(sent, isOp("PUT", "partNumber")); most < 2 {
		fail("UploadPart requests were not concurrent (at most %d in flight with Concurrency 3)", most)
	}
	if alg == types.ChecksumAlgorithmCrc32 {
		expectEq(aws.ToString(out.ChecksumCRC32), compositeCRC32(data, partSize),
			"ChecksumCRC32 of CompleteMultipartUpload (composite)")
	}
	checkPartRequests(parts, data, partSize, alg)

	head, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled})
	check(err, "HeadObject")
	expectEq(head.ContentLength, int64(len(data)), "ContentLength")
	expectEq(aws.ToString(head.ETag), multipartETag(data, partSize), "ETag from HeadObject")
	expectEq(aws.ToString(head.ContentType), "application/x-go-sdk-v2", "ContentType")
	expectEq(head.Metadata, map[string]string{"origin": "manager.Uploader"}, "Metadata")
	if alg == types.ChecksumAlgorithmCrc32 {
		expectEq(aws.ToString(head.ChecksumCRC32), compositeCRC32(data, partSize), "ChecksumCRC32 from HeadObject")
	}

	path := filepath.Join(cfg.workdir, strings.ReplaceAll(bucket+"-"+key, "/", "_"))
	f, err := os.Create(path)
	check(err, "creating "+path)
	defer os.Remove(path)
	defer f.Close()
	r.rec.take()
	dl := manager.NewDownloader(c, func(d *manager.Downloader) {
		d.PartSize = int64(partSize)
		d.Concurrency = 4
	})
	n, err := dl.Download(ctx, f, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	check(err, "manager.Downloader.Download")
	got := r.rec.take()
	expectEq(n, int64(len(data)), "bytes downloaded")
	check(f.Sync(), "sync")
	back, err := os.ReadFile(path)
	check(err, "reading the download")
	expectEq(sha256hex(back), sha256hex(data), "SHA-256 of the download")
	gets := filter(got, isOp("GET", ""))
	expectEq(len(gets), nparts, "ranged GETs of the Downloader")
	var ranges []string
	for _, g := range gets {
		ranges = append(ranges, g.Header.Get("Range"))
	}
	sort.Strings(ranges)
	var want []string
	for off := 0; off < len(data); off += partSize {
		want = append(want, fmt.Sprintf("bytes=%d-%d", off, off+partSize-1))
	}
	sort.Strings(want)
	expectEq(ranges, want, "Range headers of the Downloader (the last part asked past the end, as the SDK does)")
	if most := maxInFlight(got, isOp("GET", "")); most < 2 {
		fail("ranged GETs were not concurrent (at most %d in flight with Concurrency 4)", most)
	}
}

// checkPartRequests checks what each UploadPart carried: its length, and the checksum as the SDK
// sends it (a header over http, an aws-chunked trailer over https).
func checkPartRequests(parts []*exchange, data []byte, partSize int, alg types.ChecksumAlgorithm) {
	for _, p := range parts {
		q, _ := url.ParseQuery(p.Query)
		var num int
		fmt.Sscanf(q.Get("partNumber"), "%d", &num)
		off := (num - 1) * partSize
		end := off + partSize
		if end > len(data) {
			end = len(data)
		}
		chunk := data[off:end]
		chunked := strings.Contains(p.Header.Get("Content-Encoding"), "aws-chunked")
		if chunked {
			expectEq(p.Header.Get("X-Amz-Decoded-Content-Length"), fmt.Sprint(len(chunk)), fmt.Sprintf("part %d decoded length", num))
		} else {
			expectEq(p.ContentLength, int64(len(chunk)), fmt.Sprintf("part %d Content-Length", num))
		}
		if alg != types.ChecksumAlgorithmCrc32 {
			continue
		}
		if chunked {
			expectEq(p.Header.Get("X-Amz-Trailer"), "x-amz-checksum-crc32", fmt.Sprintf("part %d X-Amz-Trailer", num))
			expect(strings.Contains(p.BodyTail(), "x-amz-checksum-crc32:"+crc32b64(chunk)),
				"part %d: no trailer x-amz-checksum-crc32:%s at the end of its body: %q", num, crc32b64(chunk), p.BodyTail())
		} else {
			expectEq(p.Header.Get("X-Amz-Checksum-Crc32"), crc32b64(chunk), fmt.Sprintf("part %d x-amz-checksum-crc32 header", num))
		}
	}
}

// listShape is what a delimiter listing must give: the keys under prefix without the delimiter
// after it, and the distinct prefixes up to the first delimiter.
func listShape(keys []string, prefix, delim string) (contents, prefixes []string) {
	seen := map[string]bool{}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		rest := k[len(prefix):]
		if i := strings.Index(rest, delim); i >= 0 {
			p := prefix + rest[:i+len(delim)]
			if !seen[p] {
				seen[p] = true
				prefixes = append(prefixes, p)
			}
		} else {
			contents = append(contents, k)
		}
	}
	sort.Strings(contents)
	sort.Strings(prefixes)
	return contents, prefixes
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}
