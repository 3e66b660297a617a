// Sends one binary, one structured and one batched CloudEvent to a broker URL with the cloudevents
// SDK for JavaScript, and prints each answer's status as a JSON line.
const { CloudEvent, HTTP } = require("cloudevents");

async function post(url, headers, body) {
  const res = await fetch(url, { method: "POST", headers, body });
  return res.status;
}

async function main() {
  const url = process.argv[2];
  const out = {};
  const binary = new CloudEvent({
    id: "node-binary", type: "interop.binary", source: "/node", subject: "plain-subject",
    datacontenttype: "application/json", data: { n: 1 }, nodeext: "a b",
  });
  let m = HTTP.binary(binary);
  out.binary = await post(url, m.headers, m.body);

  const structured = new CloudEvent({
    id: "node-structured", type: "interop.structured", source: "/node", data: { n: 2 }, count: 5,
  });
  m = HTTP.structured(structured);
  out.structured = await post(url, m.headers, m.body);

  const batch = [1, 2].map((i) => new CloudEvent({ id: `node-batch-${i}`, type: "interop.batch", source: "/node", data: { i } }));
  out.batch = await post(url, { "content-type": "application/cloudevents-batch+json" }, JSON.stringify(batch.map((e) => e.toJSON())));
  console.log(JSON.stringify(out));
}

main().catch((e) => { console.error(e); process.exit(1); });
