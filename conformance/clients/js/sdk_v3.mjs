// The AWS SDK for JavaScript v3 (@aws-sdk/client-s3 + @aws-sdk/lib-storage) against the endpoint
// in CONF_* variables; one JSON line per step into CONF_RESULTS, like the Python clients.
//
// With its default checksum settings the SDK sends CRC32 on PutObject: as a header for a Buffer
// body, and as an aws-chunked trailer for a stream body.

import { createHash, randomBytes } from "node:crypto";
import { createReadStream, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";

import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  GetBucketCorsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutBucketCorsCommand,
  PutObjectCommand,
  S3Client,
  paginateListObjectsV2,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { createPresignedPost } from "@aws-sdk/s3-presigned-post";

import { expectEqual, recorder } from "./steps.mjs";

const CLIENT = "js-sdk-v3";
const env = process.env;
const results = env.CONF_RESULTS;
const workdir = env.CONF_WORKDIR;
const bucket = `${env.CONF_BUCKET_PREFIX ?? "conf-"}js-sdk-v3`;
const MiB = 1024 * 1024;
const { write, step } = recorder(CLIENT, results, (e) =>
  e?.$metadata ? ` (HTTP ${e.$metadata.httpStatusCode}, code ${e.Code ?? e.name})` : "");

const md5 = (buf) => createHash("md5").update(buf).digest("hex");
const crc32b64 = (buf) => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32(buf) >>> 0);
  return out.toString("base64");
};

const pkg = JSON.parse(readFileSync(new URL("./node_modules/@aws-sdk/client-s3/package.json", import.meta.url)));
write({ client: CLIENT, version: `@aws-sdk/client-s3 ${pkg.version} (node ${process.version})` });

const s3 = new S3Client({
  endpoint: env.CONF_ENDPOINT,
  region: env.CONF_REGION ?? "us-east-1",
  forcePathStyle: true,
  credentials: { accessKeyId: env.CONF_ACCESS_KEY, secretAccessKey: env.CONF_SECRET_KEY },
  maxAttempts: 1, // a retry would hide a server error
});

const small = Buffer.from("hello from the JavaScript SDK v3\n".repeat(200));

await step("CreateBucket", [], async () => {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const { Buckets } = await s3.send(new ListBucketsCommand({}));
  if (!Buckets.some((b) => b.Name === bucket)) throw new Error(`${bucket} not in ListBuckets`);
});

await step("PutObject (Buffer, default CRC32 checksum)", ["CreateBucket"], async () => {
  const put = await s3.send(new PutObjectCommand({
    Bucket: bucket, Key: "dir/small.txt", Body: small, ContentType: "text/plain",
    Metadata: { origin: "js-sdk-v3" },
  }));
  expectEqual(put.ETag, `"${md5(small)}"`, "ETag");
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "dir/small.txt", ChecksumMode: "ENABLED" }));
  expectEqual(head.ChecksumCRC32, crc32b64(small), "stored ChecksumCRC32");
  expectEqual(head.Metadata, { origin: "js-sdk-v3" }, "Metadata");
  expectEqual(head.ContentLength, small.length, "ContentLength");
});

await step("PutObject (stream body, aws-chunked CRC32 trailer)", ["CreateBucket"], async () => {
  const data = randomBytes(300 * 1024);
  const path = join(workdir, "stream.bin");
  writeFileSync(path, data);
  await s3.send(new PutObjectCommand({
    Bucket: bucket, Key: "dir/stream.bin", Body: createReadStream(path), ContentLength: data.length,
  }));
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/stream.bin", ChecksumMode: "ENABLED" }));
  expectEqual(md5(Buffer.from(await got.Body.transformToByteArray())), md5(data), "md5 of the streamed object");
  expectEqual(got.ChecksumCRC32, crc32b64(data), "ChecksumCRC32");
});

await step("GetObject (whole, Range)", ["PutObject (Buffer, default CRC32 checksum)"], async () => {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/small.txt" }));
  expectEqual(Buffer.from(await got.Body.transformToByteArray()).equals(small), true, "bytes equal");
  expectEqual(got.ContentType, "text/plain", "ContentType");
  const part = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/small.txt", Range: "bytes=10-19" }));
  expectEqual(Buffer.from(await part.Body.transformToByteArray()).toString(), small.subarray(10, 20).toString(), "range bytes");
  expectEqual(part.ContentRange, `bytes 10-19/${small.length}`, "ContentRange");
});

await step("ListObjectsV2 (delimiter, paginator)", ["CreateBucket"], async () => {
  const keys = ["list/a/1", "list/a/2", "list/b", "list/c", "list/d/1"];
  for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body: Buffer.alloc(0) }));
  const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "list/", Delimiter: "/" }));
  expectEqual((r.CommonPrefixes ?? []).map((p) => p.Prefix), ["list/a/", "list/d/"], "CommonPrefixes");
  expectEqual((r.Contents ?? []).map((c) => c.Key), ["list/b", "list/c"], "Contents");
  const seen = [];
  let pages = 0;
  for await (const page of paginateListObjectsV2({ client: s3, pageSize: 2 }, { Bucket: bucket, Prefix: "list/" })) {
    pages += 1;
    for (const c of page.Contents ?? []) seen.push(c.Key);
  }
  expectEqual(seen, keys, "keys over all pages");
  expectEqual(pages, 3, "pages of 2 for 5 keys");
});

await step("lib-storage Upload 12 MiB (multipart)", ["CreateBucket"], async () => {
  const data = randomBytes(12 * MiB);
  const upload = new Upload({
    client: s3, params: { Bucket: bucket, Key: "big.bin", Body: data }, partSize: 5 * MiB, queueSize: 2,
  });
  await upload.done();
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "big.bin" }));
  expectEqual(head.ContentLength, data.length, "ContentLength");
  if (!/-3"$/.test(head.ETag ?? "")) throw new Error(`expected a 3-part ETag, got ${head.ETag}`);
  const withSum = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "big.bin", ChecksumMode: "ENABLED" }));
  // A composite checksum ends in "-<parts>"; a full-object one must match the whole data.
  if (withSum.ChecksumCRC32 && !withSum.ChecksumCRC32.includes("-")) {
    expectEqual(withSum.ChecksumCRC32, crc32b64(data), "full-object ChecksumCRC32");
  }
  // ChecksumMode ENABLED: the SDK validates a full-object checksum against the bytes it reads.
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big.bin", ChecksumMode: "ENABLED" }));
  expectEqual(md5(Buffer.from(await got.Body.transformToByteArray())), md5(data), "md5 after round trip");
});

await step("createPresignedPost + a browser-style form POST", ["CreateBucket"], async () => {
  const data = randomBytes(256 * 1024);
  const { url, fields } = await createPresignedPost(s3, {
    Bucket: bucket,
    Key: "uploads/${filename}",
    Conditions: [["content-length-range", 1, 300 * 1024], ["starts-with", "$key", "uploads/"]],
    Fields: { "Content-Type": "image/png", success_action_status: "201" },
    Expires: 600,
  });
  const form = (body) => {
    const f = new FormData();
    for (const [name, value] of Object.entries(fields)) f.append(name, value);
    f.append("file", new Blob([body], { type: "image/png" }), "photo.png");
    return f;
  };
  const res = await fetch(url, { method: "POST", body: form(data) });
  const text = await res.text();
  expectEqual(res.status, 201, `status (${text})`);
  if (!text.includes("<Key>uploads/photo.png</Key>")) throw new Error(`PostResponse without the key: ${text}`);
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "uploads/photo.png" }));
  expectEqual(md5(Buffer.from(await got.Body.transformToByteArray())), md5(data), "md5 of the posted file");
  expectEqual(got.ContentType, "image/png", "ContentType");
  // Over the policy's content-length-range: refused, and nothing is stored.
  const tooBig = await fetch(url, { method: "POST", body: form(randomBytes(301 * 1024)) });
  const refusal = await tooBig.text();
  expectEqual([tooBig.status, /<Code>EntityTooLarge<\/Code>/.test(refusal)], [400, true], `too large (${refusal})`);
});

await step("CORS: PutBucketCors, preflight and GET from a browser origin", ["PutObject (Buffer, default CRC32 checksum)"], async () => {
  const origin = "http://app.example.test:3000";
  await s3.send(new PutBucketCorsCommand({
    Bucket: bucket,
    CORSConfiguration: {
      CORSRules: [{
        AllowedOrigins: [origin], AllowedMethods: ["GET", "PUT"], AllowedHeaders: ["*"],
        ExposeHeaders: ["ETag"], MaxAgeSeconds: 600,
      }],
    },
  }));
  const { CORSRules } = await s3.send(new GetBucketCorsCommand({ Bucket: bucket }));
  expectEqual(CORSRules[0].AllowedOrigins, [origin], "AllowedOrigins read back");
  const objectUrl = `${env.CONF_ENDPOINT}/${bucket}/dir/small.txt`;
  const preflight = await fetch(objectUrl, {
    method: "OPTIONS",
    headers: { Origin: origin, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "content-type" },
  });
  expectEqual(preflight.status, 200, "preflight status");
  expectEqual(preflight.headers.get("access-control-allow-origin"), origin, "Access-Control-Allow-Origin");
  const refused = await fetch(objectUrl, {
    method: "OPTIONS", headers: { Origin: "http://elsewhere.test", "Access-Control-Request-Method": "GET" },
  });
  expectEqual(refused.status, 403, "preflight from another origin");
  // The actual request, signed by the SDK, carrying the Origin a browser adds; the response's
  // raw headers are taken where the SDK deserializes it.
  let seen = {};
  s3.middlewareStack.add((next) => (args) => {
    args.request.headers.origin = origin;
    return next(args);
  }, { step: "build", name: "browserOrigin" });
  s3.middlewareStack.add((next) => async (args) => {
    const result = await next(args);
    seen = result.response.headers;
    return result;
  }, { step: "deserialize", name: "rawHeaders" });
  try {
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/small.txt" }));
    await got.Body.transformToByteArray();
  } finally {
    s3.middlewareStack.remove("browserOrigin");
    s3.middlewareStack.remove("rawHeaders");
  }
  expectEqual(
    [seen["access-control-allow-origin"], seen["access-control-expose-headers"]], [origin, "ETag"],
    "CORS headers of the GET",
  );
});

await step("errors: NoSuchKey, NoSuchBucket", ["CreateBucket"], async () => {
  for (const [params, code, status] of [
    [{ Bucket: bucket, Key: "missing" }, "NoSuchKey", 404],
    [{ Bucket: `${bucket}-missing`, Key: "x" }, "NoSuchBucket", 404],
  ]) {
    try {
      await s3.send(new GetObjectCommand(params));
    } catch (e) {
      expectEqual([e.name, e.$metadata?.httpStatusCode], [code, status], `error for ${JSON.stringify(params)}`);
      continue;
    }
    throw new Error(`GetObject ${JSON.stringify(params)} succeeded`);
  }
});

await step("DeleteObjects + DeleteBucket", ["CreateBucket"], async () => {
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
  const objects = (listed.Contents ?? []).map((c) => ({ Key: c.Key }));
  if (objects.length) {
    const r = await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects } }));
    expectEqual(r.Errors ?? [], [], "DeleteObjects errors");
    expectEqual((r.Deleted ?? []).length, objects.length, "number deleted");
  }
  await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
  const { Buckets } = await s3.send(new ListBucketsCommand({}));
  if (Buckets.some((b) => b.Name === bucket)) throw new Error("bucket still listed");
});
