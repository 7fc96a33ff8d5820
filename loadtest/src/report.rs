//! HTML reports with inline SVG plots, drawn from the JSON reports alone: latency percentiles
//! and rates over time (the `timeline`), and for `chat-mix` throughput and p99 against the
//! offered rate. Several `chat-mix` reports (Switchboard and the peers) are overlaid and
//! compared: the highest offered rate within the p99 limit and its ratio to the first report.
//! Hand-rolled SVG: a few polylines need no plotting crate.

use std::fmt::Write;

use serde_json::Value;

const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
const W: f64 = 640.0;
const H: f64 = 300.0;
const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 28.0;
const MB: f64 = 44.0;

/// One plotted line.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart; `y_limit` draws a dashed horizontal line (e.g. the p99 limit).
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series], y_limit: Option<f64>) -> String {
    let Some(plot) = Plot::fit(series, y_limit) else {
        return format!("<p>{}: no data</p>", esc(title));
    };
    let mut svg = String::new();
    plot.frame(&mut svg, title, x_label, y_label);
    if let Some(l) = y_limit {
        plot.limit(&mut svg, l);
    }
    for (i, s) in series.iter().enumerate() {
        plot.series(&mut svg, i, s);
    }
    svg.push_str("</svg>");
    svg
}

/// The plotting area of a chart: x from `x0` to `x1`, y from 0 to `y1`, `pw` × `ph` pixels
/// inside the margins. Only finite points are plotted.
struct Plot {
    x0: f64,
    x1: f64,
    y1: f64,
    pw: f64,
    ph: f64,
}

impl Plot {
    /// Fits the axes to every finite point and the limit (with room above it); `None` when
    /// there is no point.
    fn fit(series: &[Series], y_limit: Option<f64>) -> Option<Self> {
        let points = series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0f64);
        for &(x, y) in points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        if let Some(l) = y_limit {
            y1 = y1.max(l * 1.1);
        }
        if x0 > x1 {
            return None;
        }
        if x1 == x0 {
            x1 = x0 + 1.0;
        }
        Some(Self { x0, x1, y1: nice_ceiling(y1.max(1e-9)), pw: W - ML - MR, ph: H - MT - MB })
    }

    fn sx(&self, x: f64) -> f64 {
        ML + (x - self.x0) / (self.x1 - self.x0) * self.pw
    }

    fn sy(&self, y: f64) -> f64 {
        MT + self.ph - (y / self.y1) * self.ph
    }

    /// The SVG's head, title, border, grid with tick labels, and axis labels.
    fn frame(&self, svg: &mut String, title: &str, x_label: &str, y_label: &str) {
        let (x0, x1, y1, pw, ph) = (self.x0, self.x1, self.y1, self.pw, self.ph);
        let _ = write!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">
<text x="{}" y="16" text-anchor="middle" font-size="13">{}</text>
<rect x="{ML}" y="{MT}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##,
            W / 2.0,
            esc(title)
        );
        for i in 0..=5 {
            let (xv, yv) = (x0 + (x1 - x0) * i as f64 / 5.0, y1 * i as f64 / 5.0);
            let (x, y) = (self.sx(xv), self.sy(yv));
            let _ = write!(
                svg,
                r##"<line x1="{ML}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
                ML + pw,
                ML - 4.0,
                y + 4.0,
                short(yv),
                MT + ph + 14.0,
                short(xv)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            ML + pw / 2.0,
            H - 8.0,
            esc(x_label),
            MT + ph / 2.0,
            esc(y_label)
        );
    }

    /// The dashed line at `limit`.
    fn limit(&self, svg: &mut String, limit: f64) {
        let y = self.sy(limit);
        let _ = write!(
            svg,
            r##"<line x1="{ML}" x2="{}" y1="{y}" y2="{y}" stroke="#000" stroke-dasharray="4 3"/>"##,
            ML + self.pw
        );
    }

    /// Series `i`: its line (values above the axis drawn at its top), a dot per point when
    /// there are few, and its legend entry.
    fn series(&self, svg: &mut String, i: usize, s: &Series) {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", self.sx(x), self.sy(y.min(self.y1))))
            .collect();
        let _ =
            write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#, pts.join(" "));
        if pts.len() <= 40 {
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(svg, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"#);
            }
        }
        let ly = MT + 14.0 + 14.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="10" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            ML + 8.0,
            ly - 4.0,
            ML + 22.0,
            ly,
            esc(&s.name)
        );
    }
}

fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn short(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn timeline_series(r: &Value, key: &str, name: &str) -> Series {
    let points = r["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["t"].as_f64()?, s[key].as_f64()?)))
        .collect();
    Series { name: name.to_owned(), points }
}

fn step_series(r: &Value, y: impl Fn(&Value) -> Option<f64>, name: &str) -> Series {
    let points = r["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["offered_rate"].as_f64()?, y(s)?)))
        .collect();
    Series { name: name.to_owned(), points }
}

/// A report's name in tables and legends: its `label`, else scenario, framing and url.
pub fn label(r: &Value) -> String {
    if let Some(l) = r["label"].as_str() {
        return l.to_owned();
    }
    format!(
        "{} {} {}",
        r["scenario"].as_str().unwrap_or("?"),
        r["params"]["framing"].as_str().unwrap_or(""),
        r["params"]["url"].as_str().unwrap_or("")
    )
}

/// The comparison of several chat-mix reports: max rate within the limit and ratios to the
/// first (the one being compared).
pub fn comparison(reports: &[Value]) -> Vec<(String, Option<f64>, Option<f64>)> {
    let first = reports.first().and_then(|r| r["max_rate_within_limit"].as_f64());
    reports
        .iter()
        .map(|r| {
            let best = r["max_rate_within_limit"].as_f64();
            let ratio = match (first, best) {
                (Some(f), Some(b)) if b > 0.0 => Some(f / b),
                _ => None,
            };
            (label(r), best, ratio)
        })
        .collect()
}

/// The whole HTML page for one or more reports.
pub fn html(reports: &[Value]) -> String {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>loadtest report</title><style>\
         body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} .charts{display:flex;flex-wrap:wrap;gap:12px}\
         pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:11px}</style></head><body>",
    );
    let chat: Vec<&Value> = reports.iter().filter(|r| r["scenario"] == "chat-mix").collect();
    if chat.len() > 1 {
        let limit = chat[0]["params"]["p99_limit_ms"].as_f64();
        page.push_str("<h1>Chat mix, side by side</h1><table><tr><th>server</th><th>max offered events/s with p99 within the limit</th><th>first ÷ this</th></tr>");
        let owned: Vec<Value> = chat.iter().map(|r| (*r).clone()).collect();
        for (name, best, ratio) in comparison(&owned) {
            let _ = write!(
                page,
                "<tr><td style=\"text-align:left\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&name),
                best.map_or("none".into(), |b| format!("{b:.0}")),
                ratio.map_or("-".into(), |r| format!("{r:.2}"))
            );
        }
        page.push_str("</table><div class=\"charts\">");
        let p99: Vec<Series> =
            chat.iter().map(|r| step_series(r, |s| s["delivery_ms"]["p99"].as_f64(), &label(r))).collect();
        page.push_str(&line_chart("delivery p99 against offered rate", "offered events/s", "ms", &p99, limit));
        let thr: Vec<Series> =
            chat.iter().map(|r| step_series(r, |s| s["deliveries_per_sec"].as_f64(), &label(r))).collect();
        page.push_str(&line_chart("deliveries/s against offered rate", "offered events/s", "deliveries/s", &thr, None));
        page.push_str("</div>");
    }
    for r in reports {
        let _ = write!(
            page,
            "<h2>{} (run {})</h2><div class=\"charts\">",
            esc(&label(r)),
            esc(r["run_id"].as_str().unwrap_or("?"))
        );
        if r["scenario"] == "chat-mix" {
            let limit = r["params"]["p99_limit_ms"].as_f64();
            let lat = vec![
                step_series(r, |s| s["delivery_ms"]["p50"].as_f64(), "delivery p50"),
                step_series(r, |s| s["delivery_ms"]["p99"].as_f64(), "delivery p99"),
                step_series(r, |s| s["typing_ms"]["p99"].as_f64(), "typing p99"),
                step_series(r, |s| s["ack_ms"]["p99"].as_f64(), "ack p99"),
            ];
            page.push_str(&line_chart("latency against offered rate", "offered events/s", "ms", &lat, limit));
            let thr = vec![
                step_series(r, |s| s["offered_rate"].as_f64(), "offered"),
                step_series(r, |s| s["sent_per_sec"].as_f64(), "sent/s"),
                step_series(r, |s| s["deliveries_per_sec"].as_f64(), "deliveries/s"),
            ];
            page.push_str(&line_chart("throughput against offered rate", "offered events/s", "per second", &thr, None));
        }
        if r["scenario"] == "chaos" {
            page.push_str(&chaos_table(r));
        }
        if r["timeline"].as_array().is_some_and(|t| !t.is_empty()) {
            let lat = vec![timeline_series(r, "p50_ms", "p50"), timeline_series(r, "p99_ms", "p99")];
            if lat.iter().any(|s| !s.points.is_empty()) {
                page.push_str(&line_chart("delivery latency per second", "seconds", "ms", &lat, None));
            }
            let rates = vec![
                timeline_series(r, "sent", "sent"),
                timeline_series(r, "acked", "acked"),
                timeline_series(r, "delivered", "delivered"),
            ];
            page.push_str(&line_chart("events per second", "seconds", "per second", &rates, None));
        }
        page.push_str("</div>");
        // Everything but the timeline, as numbers.
        let mut shown = r.clone();
        if let Some(o) = shown.as_object_mut() {
            o.remove("timeline");
        }
        let _ = write!(page, "<pre>{}</pre>", esc(&serde_json::to_string_pretty(&shown).unwrap_or_default()));
    }
    page.push_str("</body></html>\n");
    page
}

/// A `chaos` report's periods, one row per fault: losses, time back, errors and presence.
fn chaos_table(r: &Value) -> String {
    let mut t = String::from(
        "<table><tr><th>period</th><th>from s</th><th>acked</th><th>lost</th><th>not in history</th>\
         <th>disconnects</th><th>back p50 ms</th><th>back p99 ms</th><th>back max ms</th><th>not back</th>\
         <th>errors by code</th><th>probes closed</th><th>offline after close, max ms</th>\
         <th>connected shown offline at end</th></tr>",
    );
    for p in r["periods"].as_array().into_iter().flatten() {
        let cells = [
            p["start_secs"].to_string(),
            p["acked"].to_string(),
            p["lost"].to_string(),
            p["not_in_history"].to_string(),
            p["disconnects"].to_string(),
            p["back_ms"]["p50"].to_string(),
            p["back_ms"]["p99"].to_string(),
            p["back_ms"]["max"].to_string(),
            p["not_back"].to_string(),
            p["errors"]["by_kind"].to_string(),
            p["presence"]["probes_closed"].to_string(),
            p["presence"]["offline_after_close_ms"]["max"].to_string(),
            p["presence"]["connected_probes_offline_at_end"].to_string(),
        ];
        let _ = write!(t, "<tr><td style=\"text-align:left\">{}</td>", esc(p["name"].as_str().unwrap_or("?")));
        for c in cells {
            let _ = write!(t, "<td>{}</td>", esc(&c));
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compares_chat_mix_reports() {
        let step = |rate: f64, p99: f64| json!({"offered_rate": rate, "delivery_ms": {"p99": p99}});
        let a = json!({"scenario": "chat-mix", "label": "a", "max_rate_within_limit": 6000.0,
                       "steps": [step(1000.0, 2.0), step(6000.0, 40.0)]});
        let b = json!({"scenario": "chat-mix", "label": "b", "max_rate_within_limit": 1000.0,
                       "steps": [step(1000.0, 20.0), step(1500.0, 90.0)]});
        let c = comparison(&[a.clone(), b.clone()]);
        assert_eq!(c[1].2, Some(6.0));
        let page = html(&[a, b]);
        assert!(page.contains("<svg") && page.contains("6.00"));
    }
}
