//! The operator's commands (`weir status|pause|resume|offsets`): a small
//! HTTP/1.1 client of a running weir's listener, and how its answers are
//! printed. Blocking.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

/// How long a request may take: a pause waits for in-flight events, an
/// offsets reset for the module to stop and start.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A weir HTTP listener, from a URL like `http://127.0.0.1:9464`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port`.
    authority: String,
    /// Path prefix, without a trailing `/` (usually empty).
    prefix: String,
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: only http:// URLs are supported"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let authority = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            authority,
            prefix: prefix.to_owned(),
        })
    }
}

/// An answer: status code and body.
#[derive(Debug)]
struct Answer {
    code: u16,
    body: String,
}

impl Endpoint {
    /// Sends one request and reads the whole answer.
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let url = format!("http://{}{}{path}", self.authority, self.prefix);
        let mut stream = TcpStream::connect(&self.authority)
            .with_context(|| format!("cannot connect to weir at {url}"))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Accept: application/json\r\nContent-Length: {}\r\n",
            self.prefix,
            self.authority,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .with_context(|| format!("no complete answer from {url}"))?;
        parse_answer(&raw).with_context(|| format!("bad answer from {url}"))
    }
}

fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of headers"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Answer { code, body })
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| anyhow::anyhow!("truncated chunk"))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| anyhow::anyhow!("truncated chunk"))?;
        out.push_str(chunk);
        body = rest.get(size..).unwrap_or("").trim_start_matches("\r\n");
    }
}

/// The answer's JSON when the request succeeded, else its error.
fn json(answer: Answer) -> anyhow::Result<Value> {
    let value: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    if (200..300).contains(&answer.code) {
        return Ok(value);
    }
    let why = value["error"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| answer.body.trim().to_owned());
    anyhow::bail!("weir answered {}: {why}", answer.code)
}

/// `weir status`: every module, as a table or as `/status`'s JSON.
pub fn status(endpoint: &Endpoint, as_json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let modules = json(endpoint.request("GET", "/status", None, None)?)?;
    if as_json {
        writeln!(out, "{}", serde_json::to_string_pretty(&modules)?)?;
    } else {
        write!(out, "{}", table(&modules))?;
    }
    Ok(())
}

/// `/status` as a table: one line per module, then one per partition and
/// per stalled partition.
pub fn table(modules: &Value) -> String {
    let mut rows = vec![
        [
            "MODULE",
            "STATE",
            "VERSION",
            "GROUP",
            "PAUSED",
            "PARTITIONS",
            "LAG",
            "STALLED",
        ]
        .map(str::to_owned),
    ];
    let mut details: Vec<Vec<String>> = Vec::new();
    for m in modules.as_array().into_iter().flatten() {
        let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        let partitions = m["partitions"].as_array().cloned().unwrap_or_default();
        let lag: Option<i64> = partitions
            .iter()
            .filter_map(|p| p["lag"].as_i64())
            .reduce(|a, b| a + b);
        let stalled = m["stalled"].as_object().cloned().unwrap_or_default();
        let paused = match (m["paused"].as_bool(), &m["pause-state"]) {
            (Some(true), Value::Object(s)) if s.contains_key("paused") => "yes".to_owned(),
            (Some(true), _) => "pausing".to_owned(),
            _ => "no".to_owned(),
        };
        rows.push([
            text(&m["name"]),
            text(&m["state"]),
            m["digest"]
                .as_str()
                .map_or("-".to_owned(), |d| d.chars().take(12).collect()),
            text(&m["group"]),
            paused,
            partitions.len().to_string(),
            lag.map_or("-".to_owned(), |l| l.to_string()),
            stalled.len().to_string(),
        ]);
        let mut lines = Vec::new();
        if let Some(reason) = m["reason"].as_str() {
            lines.push(format!("  {}: {reason}", text(&m["name"])));
        }
        for p in &partitions {
            let num = |v: &Value| v.as_i64().map_or("-".to_owned(), |n| n.to_string());
            lines.push(format!(
                "  {}[{}]  lag {}  committed {}",
                text(&p["topic"]),
                num(&p["partition"]),
                num(&p["lag"]),
                num(&p["committed"])
            ));
        }
        for (partition, why) in &stalled {
            lines.push(format!("  {partition} stalled: {}", text(why)));
        }
        details.push(lines);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i > 0 {
            for line in &details[i - 1] {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if rows.len() == 1 {
        out.push_str("(no modules)\n");
    }
    out
}

/// `weir pause` / `weir resume`.
pub fn pause(
    endpoint: &Endpoint,
    token: Option<&str>,
    module: &str,
    paused: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let verb = if paused { "pause" } else { "resume" };
    let path = format!("/admin/modules/{module}/{verb}");
    let answer = json(endpoint.request("POST", &path, token, None)?)?;
    let state = &answer["state"];
    let done = match (paused, answer["applied"].as_bool()) {
        (_, Some(false)) => format!("asked to {verb}; not applied yet (state {state})"),
        (true, _) if state["paused"]["drained"] == Value::Bool(false) => {
            "paused; some events were still in flight at the drain timeout".to_owned()
        }
        (true, _) => "paused; events in flight finished and their offsets are committed".into(),
        (false, _) => "resumed".to_owned(),
    };
    writeln!(out, "module `{module}`: {done}")?;
    Ok(())
}

/// `weir offsets`: moves (or, with `dry_run`, shows) the group's offsets.
pub fn offsets(
    endpoint: &Endpoint,
    token: Option<&str>,
    module: &str,
    reset_to: &[String],
    dry_run: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let body = serde_json::json!({"reset-to": reset_to, "dry-run": dry_run});
    let path = format!("/admin/modules/{module}/offsets");
    let answer = json(endpoint.request("POST", &path, token, Some(&body))?)?;
    let group = answer["group"].as_str().unwrap_or("?");
    for m in answer["moves"].as_array().into_iter().flatten() {
        let from = m["from"]
            .as_i64()
            .map_or_else(|| "none".to_owned(), |o| o.to_string());
        writeln!(
            out,
            "{}[{}]  {from} -> {}",
            m["topic"].as_str().unwrap_or("?"),
            m["partition"],
            m["to"]
        )?;
    }
    if let Some(warning) = answer["warning"].as_str() {
        writeln!(out, "warning: {warning}")?;
    }
    if dry_run {
        writeln!(out, "dry run: group `{group}` unchanged")?;
    } else {
        writeln!(
            out,
            "group `{group}` moved; module `{module}` consumes from the new offsets"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let e: Endpoint = "http://127.0.0.1:9464".parse().unwrap();
        assert_eq!(
            (e.authority.as_str(), e.prefix.as_str()),
            ("127.0.0.1:9464", "")
        );
        let e: Endpoint = "http://weir.local/ops/".parse().unwrap();
        assert_eq!(
            (e.authority.as_str(), e.prefix.as_str()),
            ("weir.local:80", "/ops")
        );
        assert!("https://x:1".parse::<Endpoint>().is_err());
        assert!("http://".parse::<Endpoint>().is_err());
    }

    #[test]
    fn answers_parse_plain_and_chunked() {
        let a = parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]").unwrap();
        assert_eq!((a.code, a.body.as_str()), (200, "[]"));
        let a = parse_answer(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"e\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((a.code, a.body.as_str()), (404, "{\"e\":1}"));
        let err = json(Answer {
            code: 403,
            body: r#"{"error":"no token"}"#.into(),
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "weir answered 403: no token");
    }

    #[test]
    fn the_table_shows_partitions_lag_and_stalls() {
        let status = serde_json::json!([{
            "name": "enrich", "state": "running", "digest": "0123456789abcdef",
            "group": "weir-enrich", "paused": true, "pause-state": {"paused": {"drained": true}},
            "partitions": [
                {"topic": "orders", "partition": 0, "lag": 4, "committed": 10},
                {"topic": "orders", "partition": 1, "lag": null, "committed": null}
            ],
            "stalled": {"orders[1]": "not authorized"}
        }]);
        let text = table(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("MODULE"), "{text}");
        assert!(
            lines[1].contains("enrich") && lines[1].contains("0123456789ab"),
            "{text}"
        );
        assert!(
            lines[1].contains("yes") && lines[1].contains(" 4 "),
            "{text}"
        );
        assert!(text.contains("orders[0]  lag 4  committed 10"), "{text}");
        assert!(text.contains("orders[1] stalled: not authorized"), "{text}");
        assert_eq!(
            table(&serde_json::json!([])).lines().nth(1),
            Some("(no modules)")
        );
    }
}
