// A subscriber that parses every request with the cloudevents SDK for JavaScript and prints the
// event it understood (or the error) as one JSON line; it answers 200.
const http = require("http");
const { HTTP } = require("cloudevents");

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString();
    try {
      const ev = HTTP.toEvent({ headers: req.headers, body });
      const events = Array.isArray(ev) ? ev : [ev];
      for (const e of events) console.log(JSON.stringify({ event: e.toJSON(), prefer: req.headers["prefer"] || "" }));
    } catch (err) {
      console.log(JSON.stringify({ error: String(err) }));
    }
    res.writeHead(200);
    res.end();
  });
});
server.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ listening: server.address().port })));
