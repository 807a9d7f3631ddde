//! `/metrics` text: OpenMetrics 1.0 for scrapers that ask for it (Prometheus does), the classic
//! Prometheus text format 0.0.4 otherwise (curl, `promtool check metrics`).
//!
//! The two differ only in headers: OpenMetrics names a counter family without `_total`, adds
//! `# UNIT`, and ends with `# EOF`. A series whose window holds no frame gets no quantile
//! samples (never a made-up 0); its `_sum` and `_count` are still there.

use std::fmt::Write;

use framescale_core::metrics::{
    CONTAINER_LABEL, DEVICE_LABEL, EXPORTER_DEVICE_POLL_INTERVAL_SECONDS, EXPORTER_WINDOW_SECONDS,
    FRAME_DURATION_SECONDS, FRAME_LATENCY_SECONDS, FRAMES_TOTAL, GPU_DUTY_CYCLE_RATIO,
    GPU_MEMORY_USED_BYTES, MEASURE_LABEL, NAMESPACE_LABEL, OUTCOME_LABEL, POD_LABEL,
    RENDER_ERRORS_TOTAL, SUMMARY_QUANTILES, UUID_LABEL,
};
use framescale_core::window::Scratch;

use crate::device::{DeviceReading, DeviceStats};
use crate::stats::ExporterStats;
use crate::store::{Series, SeriesStore, Summary};

/// Which text format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Prometheus,
}

impl Format {
    /// The format an `Accept` header asks for.
    #[must_use]
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of this format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// A counter family: name, help, and samples as (labels, value).
type Family<'a> = (&'a str, &'a str, &'a [(&'a str, u64)]);

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Summary,
}

/// Writes every metric of the exporter at `now_millis`: the series of `store`, the device
/// readings and the device source's figures, and the exporter's own counters.
#[must_use]
pub fn render(
    store: &SeriesStore,
    devices: &[DeviceReading],
    device_stats: &DeviceStats,
    stats: &ExporterStats,
    now_millis: u64,
    format: Format,
    scratch: &mut Scratch,
) -> String {
    let series: Vec<(String, &Series)> = store
        .iter()
        .map(|(key, series)| {
            (
                series_labels(&key.namespace, &key.pod, &key.container),
                series,
            )
        })
        .collect();
    let mut out = String::with_capacity(256 + series.len() * 900);
    write_frame_durations(&mut out, format, &series, now_millis, scratch);
    write_frame_latencies(&mut out, format, &series, now_millis, scratch);
    write_frame_counts(&mut out, format, &series);
    header(
        &mut out,
        format,
        RENDER_ERRORS_TOTAL,
        Kind::Counter,
        "Errors a renderer reported outside any frame (the job failed before rendering).",
        None,
    );
    for (labels, s) in &series {
        sample(&mut out, RENDER_ERRORS_TOTAL, labels, s.job_errors);
    }
    let devices = if device_stats.readings_current(now_millis) {
        devices
    } else {
        &[]
    };
    write_devices(&mut out, format, devices);
    write_device_self_metrics(&mut out, format, device_stats, now_millis);
    write_self_metrics(&mut out, format, store, stats);
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn write_frame_durations(
    out: &mut String,
    format: Format,
    series: &[(String, &Series)],
    now_millis: u64,
    scratch: &mut Scratch,
) {
    let name = FRAME_DURATION_SECONDS;
    header(
        out,
        format,
        name,
        Kind::Summary,
        "Time to render one frame, as the pod reports it; quantiles over the sliding window.",
        Some("seconds"),
    );
    for (labels, s) in series {
        write_summary(out, name, labels, &s.render, now_millis, scratch);
    }
}

/// The latency summary: queue plus render (a refused frame at an hour), labelled with what the
/// pod's latency is made of (`queue_and_render`, or `render` where it reports no queue time).
fn write_frame_latencies(
    out: &mut String,
    format: Format,
    series: &[(String, &Series)],
    now_millis: u64,
    scratch: &mut Scratch,
) {
    let name = FRAME_LATENCY_SECONDS;
    header(
        out,
        format,
        name,
        Kind::Summary,
        "Time from a frame's arrival to its end (queue + render; a refused frame counts as 3600 s); measure says of what (queue_and_render, or render where the pod reports no queue time).",
        Some("seconds"),
    );
    for (labels, s) in series {
        if s.latency.count == 0 {
            continue;
        }
        let labels = format!(
            "{labels},{MEASURE_LABEL}=\"{}\"",
            s.latency_measure().label()
        );
        write_summary(out, name, &labels, &s.latency, now_millis, scratch);
    }
}

/// One series of a summary: its quantiles when the window holds frames (none otherwise, never
/// a made-up 0), then `_sum` and `_count`.
fn write_summary(
    out: &mut String,
    name: &str,
    labels: &str,
    summary: &Summary,
    now_millis: u64,
    scratch: &mut Scratch,
) {
    let quantiles = SUMMARY_QUANTILES.map(|(q, _)| q);
    if let Some(snapshot) = summary.snapshot(now_millis, &quantiles, scratch) {
        for ((_, label), value) in SUMMARY_QUANTILES.iter().zip(&snapshot.values) {
            let labels = format!("{labels},quantile=\"{label}\"");
            sample(out, name, &labels, value.as_secs_f64());
        }
    }
    sample(out, &format!("{name}_sum"), labels, summary.sum_seconds);
    sample(out, &format!("{name}_count"), labels, summary.count);
}

fn write_frame_counts(out: &mut String, format: Format, series: &[(String, &Series)]) {
    header(
        out,
        format,
        FRAMES_TOTAL,
        Kind::Counter,
        "Frames finished, by outcome.",
        None,
    );
    for (labels, s) in series {
        for (outcome, count) in [
            ("ok", s.frames_ok),
            ("failed", s.frames_failed),
            ("refused", s.frames_refused),
        ] {
            sample(
                out,
                FRAMES_TOTAL,
                &format!("{labels},{OUTCOME_LABEL}=\"{outcome}\""),
                count,
            );
        }
    }
}

/// Duty and memory of each device reading. A reading without memory gets no memory sample.
fn write_devices(out: &mut String, format: Format, devices: &[DeviceReading]) {
    let labels: Vec<String> = devices
        .iter()
        .map(|d| {
            labels(&[
                (NAMESPACE_LABEL, &d.key.namespace),
                (POD_LABEL, &d.key.pod),
                (CONTAINER_LABEL, &d.key.container),
                (DEVICE_LABEL, d.device.label()),
                (UUID_LABEL, &d.uuid),
            ])
        })
        .collect();
    header(
        out,
        format,
        GPU_DUTY_CYCLE_RATIO,
        Kind::Gauge,
        "Share of the last poll window the device was busy for the pod; measure says of what (sm_active, busy_time, process_sm, cpu_time).",
        Some("ratio"),
    );
    for (labels, d) in labels.iter().zip(devices) {
        if let Some(duty) = d.duty {
            let labels = format!("{labels},{MEASURE_LABEL}=\"{}\"", duty.measure.label());
            sample(out, GPU_DUTY_CYCLE_RATIO, &labels, duty.ratio);
        }
    }
    header(
        out,
        format,
        GPU_MEMORY_USED_BYTES,
        Kind::Gauge,
        "Device memory the pod holds (device=\"cpu\": resident memory).",
        Some("bytes"),
    );
    for (labels, d) in labels.iter().zip(devices) {
        if let Some(bytes) = d.memory_bytes {
            sample(out, GPU_MEMORY_USED_BYTES, labels, bytes);
        }
    }
}

fn write_device_self_metrics(
    out: &mut String,
    format: Format,
    stats: &DeviceStats,
    now_millis: u64,
) {
    let errors = "framescale_exporter_device_errors_total";
    header(
        out,
        format,
        errors,
        Kind::Counter,
        "Device readings that could not be measured or attributed, by reason.",
        None,
    );
    for (reason, count) in stats.failures() {
        let labels = format!("reason=\"{}\"", reason.label());
        sample(out, errors, &labels, count);
    }
    let poll = "framescale_exporter_device_poll_duration_seconds";
    header(
        out,
        format,
        poll,
        Kind::Gauge,
        "Duration of the last poll of the device source.",
        Some("seconds"),
    );
    sample(out, poll, "", stats.last_poll().as_secs_f64());
    if let Some(age) = stats.poll_age(now_millis) {
        let name = "framescale_exporter_device_poll_age_seconds";
        header(
            out,
            format,
            name,
            Kind::Gauge,
            "Time since the last poll of the device source was published; past three poll intervals its readings are left out.",
            Some("seconds"),
        );
        sample(out, name, "", age.as_secs_f64());
    }
    if let Some(up) = stats.up() {
        let name = "framescale_exporter_device_source_up";
        header(
            out,
            format,
            name,
            Kind::Gauge,
            "1 when the device source ran at its last poll, 0 when it could not run at all (NVML does not load): the node's devices are unmeasured.",
            None,
        );
        sample(
            out,
            name,
            &format!("source=\"{}\"", stats.source),
            f64::from(u8::from(up)),
        );
    }
    if !stats.source.is_empty() {
        let info = "framescale_exporter_device_source_info";
        header(
            out,
            format,
            info,
            Kind::Gauge,
            "The device source that runs (nvml, cpu, none): 1.",
            None,
        );
        sample(out, info, &format!("source=\"{}\"", stats.source), 1);
    }
    if let Some(window) = stats.interval {
        header(
            out,
            format,
            EXPORTER_DEVICE_POLL_INTERVAL_SECONDS,
            Kind::Gauge,
            "The window device duty is averaged over (--device-poll-interval).",
            Some("seconds"),
        );
        sample(
            out,
            EXPORTER_DEVICE_POLL_INTERVAL_SECONDS,
            "",
            window.as_secs_f64(),
        );
    }
}

fn write_self_metrics(
    out: &mut String,
    format: Format,
    store: &SeriesStore,
    stats: &ExporterStats,
) {
    let get = ExporterStats::get;
    let counters: [Family<'_>; 10] = [
        (
            "framescale_exporter_log_lines_total",
            "CRI records read from log files.",
            &[("", get(&stats.lines_read))],
        ),
        (
            "framescale_exporter_log_bytes_total",
            "Bytes read from log files.",
            &[("", get(&stats.bytes_read))],
        ),
        (
            "framescale_exporter_parse_errors_total",
            "Log lines skipped as unreadable, by reason.",
            &[
                ("reason=\"cri\"", get(&stats.malformed_cri)),
                ("reason=\"oversize\"", get(&stats.oversize_lines)),
                ("reason=\"frame_line\"", get(&stats.invalid_frame_lines)),
            ],
        ),
        (
            "framescale_exporter_read_errors_total",
            "Log files or directories that could not be read.",
            &[("", get(&stats.read_errors))],
        ),
        (
            "framescale_exporter_log_rotations_total",
            "Log files rotated, by kind.",
            &[
                ("kind=\"rename\"", get(&stats.rotations_renamed)),
                ("kind=\"truncate\"", get(&stats.rotations_truncated)),
            ],
        ),
        (
            "framescale_exporter_rotated_files_lost_total",
            "Rotated log files with unread bytes removed while the exporter was down.",
            &[("", get(&stats.rotations_lost))],
        ),
        (
            "framescale_exporter_checkpoints_total",
            "Checkpoints of read positions and counters (--state-dir), by result.",
            &[
                ("result=\"written\"", get(&stats.checkpoints_written)),
                ("result=\"failed\"", get(&stats.checkpoint_errors)),
            ],
        ),
        (
            "framescale_exporter_late_frames_total",
            "Frames too old to join the window (counted in the totals only).",
            &[("", get(&stats.late_frames))],
        ),
        (
            "framescale_exporter_series_dropped_total",
            "Series dropped after their pod disappeared.",
            &[("", get(&stats.series_dropped))],
        ),
        (
            "framescale_exporter_push_requests_rejected_total",
            "Push requests rejected, by reason.",
            &[
                ("reason=\"invalid\"", get(&stats.push_rejected_invalid)),
                ("reason=\"too_large\"", get(&stats.push_rejected_too_large)),
                (
                    "reason=\"not_watched\"",
                    get(&stats.push_rejected_not_watched),
                ),
                (
                    "reason=\"series_cap\"",
                    get(&stats.push_rejected_series_cap),
                ),
                ("reason=\"disabled\"", get(&stats.push_rejected_disabled)),
            ],
        ),
    ];
    for (name, help, samples) in counters {
        header(out, format, name, Kind::Counter, help, None);
        for (labels, value) in samples {
            sample(out, name, labels, *value);
        }
    }
    let push = "framescale_exporter_push_records_total";
    header(
        out,
        format,
        push,
        Kind::Counter,
        "Frame records accepted by POST /v1/frames.",
        None,
    );
    sample(out, push, "", get(&stats.push_records));
    write_self_gauges(out, format, store, stats);
}

fn write_self_gauges(out: &mut String, format: Format, store: &SeriesStore, stats: &ExporterStats) {
    let get = ExporterStats::get;
    let gauges: [(&str, &str, f64); 5] = [
        (
            EXPORTER_WINDOW_SECONDS,
            "The window the frame-time quantiles cover (--window).",
            store.window().as_secs_f64(),
        ),
        (
            "framescale_exporter_pods_tracked",
            "Pods with at least one tracked series.",
            store.pod_count() as f64,
        ),
        (
            "framescale_exporter_series_tracked",
            "Series (namespace, pod, container) tracked.",
            store.len() as f64,
        ),
        (
            "framescale_exporter_log_files_tracked",
            "Log files open for tailing.",
            get(&stats.files_tracked) as f64,
        ),
        (
            "framescale_exporter_poll_duration_seconds",
            "Duration of the last poll of the log root.",
            get(&stats.last_poll_micros) as f64 / 1e6,
        ),
    ];
    for (name, help, value) in gauges {
        let unit = name.ends_with("_seconds").then_some("seconds");
        header(out, format, name, Kind::Gauge, help, unit);
        sample(out, name, "", value);
    }
}

fn header(
    out: &mut String,
    format: Format,
    name: &str,
    kind: Kind,
    help: &str,
    unit: Option<&str>,
) {
    let kind = match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Summary => "summary",
    };
    match format {
        Format::Prometheus => {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        Format::OpenMetrics => {
            let family = if kind == "counter" {
                name.strip_suffix("_total").unwrap_or(name)
            } else {
                name
            };
            let _ = writeln!(out, "# TYPE {family} {kind}");
            if let Some(unit) = unit {
                let _ = writeln!(out, "# UNIT {family} {unit}");
            }
            let _ = writeln!(out, "# HELP {family} {help}");
        }
    }
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn series_labels(namespace: &str, pod: &str, container: &str) -> String {
    labels(&[
        (NAMESPACE_LABEL, namespace),
        (POD_LABEL, pod),
        (CONTAINER_LABEL, container),
    ])
}

/// `name="value",…` with the values escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut labels = String::with_capacity(pairs.iter().map(|(_, v)| v.len() + 16).sum());
    for (i, (label, value)) in pairs.iter().enumerate() {
        if i > 0 {
            labels.push(',');
        }
        labels.push_str(label);
        labels.push_str("=\"");
        escape_label_value(value, &mut labels);
        labels.push('"');
    }
    labels
}

/// Escapes a label value as both formats need: `\`, `"` and newline.
fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use framescale_core::frame::{FrameRecord, RenderEvent};
    use framescale_core::window::WindowConfig;

    use super::*;
    use crate::device::FailureReason;
    use crate::store::SeriesKey;

    const NOW: u64 = 1_800_000_000_000;

    fn store() -> SeriesStore {
        let mut store = SeriesStore::new(WindowConfig::default());
        let key = SeriesKey::new("render", "blender-0", "blender");
        for ms in [10, 20, 30, 40] {
            store.record(
                &key,
                &RenderEvent::Frame(FrameRecord::ok(None, Duration::from_millis(ms))),
                NOW,
            );
        }
        // A series whose only frame has left the window.
        let idle = RenderEvent::Frame(FrameRecord::ok(None, Duration::from_millis(5)));
        store.record(
            &SeriesKey::new("render", "idle-0", "worker"),
            &idle,
            NOW - 120_000,
        );
        store
    }

    #[test]
    fn frame_metrics_in_both_formats() {
        let store = store();
        let stats = ExporterStats::default();
        let text = render(
            &store,
            &[],
            &DeviceStats::default(),
            &stats,
            NOW,
            Format::Prometheus,
            &mut Scratch::default(),
        );
        let labels = r#"namespace="render",pod="blender-0",container="blender""#;
        for want in [
            "# TYPE framescale_frame_duration_seconds summary\n",
            // HDR quantiles report the top of the sample's bucket: 20 ms → 20.015 ms.
            &format!("framescale_frame_duration_seconds{{{labels},quantile=\"0.5\"}} 0.020015\n"),
            &format!("framescale_frame_duration_seconds{{{labels},quantile=\"0.95\"}} 0.040031\n"),
            &format!("framescale_frame_duration_seconds_sum{{{labels}}} 0.1\n"),
            &format!("framescale_frame_duration_seconds_count{{{labels}}} 4\n"),
            &format!("framescale_frames_total{{{labels},outcome=\"ok\"}} 4\n"),
            "# TYPE framescale_frames_total counter\n",
            "framescale_exporter_pods_tracked 2\n",
            "framescale_exporter_window_seconds 60\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
        assert!(
            !text.contains("framescale_exporter_device_poll_interval_seconds"),
            "no device source, no duty window"
        );

        let open = render(
            &store,
            &[],
            &DeviceStats::default(),
            &stats,
            NOW,
            Format::OpenMetrics,
            &mut Scratch::default(),
        );
        assert!(open.contains("# TYPE framescale_frames counter\n"));
        assert!(open.contains("# UNIT framescale_frame_duration_seconds seconds\n"));
        assert!(open.ends_with("# EOF\n"));
    }

    #[test]
    fn an_idle_series_has_no_quantiles() {
        let text = render(
            &store(),
            &[],
            &DeviceStats::default(),
            &ExporterStats::default(),
            NOW,
            Format::Prometheus,
            &mut Scratch::default(),
        );
        assert!(
            !text.contains(r#"pod="idle-0",container="worker",quantile"#),
            "{text}"
        );
        assert!(text.contains(r#"framescale_frame_duration_seconds_count{namespace="render",pod="idle-0",container="worker"} 1"#));
    }

    #[test]
    fn device_readings_are_gauges_and_missing_memory_is_left_out() {
        let reading = |pod: &str, memory_bytes| DeviceReading {
            key: SeriesKey::new("render", pod, "worker"),
            device: crate::device::DeviceKind::Cpu,
            uuid: "cpu".into(),
            duty: Some(crate::device::Duty {
                ratio: 0.625,
                measure: crate::device::Measure::CpuTime,
            }),
            memory_bytes,
        };
        let stats = ExporterStats::default();
        let device_stats = DeviceStats::new("cpu", Some(Duration::from_millis(1500)));
        device_stats.count(FailureReason::UnknownPod);
        let render_at = |now| {
            render(
                &SeriesStore::new(WindowConfig::default()),
                &[reading("a", Some(4096)), reading("b", None)],
                &device_stats,
                &stats,
                now,
                Format::OpenMetrics,
                &mut Scratch::default(),
            )
        };
        assert!(
            !render_at(NOW).contains("framescale_gpu_duty_cycle_ratio{"),
            "no poll published yet: no readings"
        );
        device_stats.polled_at(NOW - 1_000);
        let text = render_at(NOW);
        let a = r#"namespace="render",pod="a",container="worker",device="cpu",uuid="cpu""#;
        let b = r#"namespace="render",pod="b",container="worker",device="cpu",uuid="cpu""#;
        for want in [
            "# TYPE framescale_gpu_duty_cycle_ratio gauge\n# UNIT framescale_gpu_duty_cycle_ratio ratio\n",
            &format!("framescale_gpu_duty_cycle_ratio{{{a},measure=\"cpu_time\"}} 0.625\n"),
            &format!("framescale_gpu_duty_cycle_ratio{{{b},measure=\"cpu_time\"}} 0.625\n"),
            &format!("framescale_gpu_memory_used_bytes{{{a}}} 4096\n"),
            "framescale_exporter_device_errors_total{reason=\"unknown_pod\"} 1\n",
            "framescale_exporter_device_poll_interval_seconds 1.5\n",
            "framescale_exporter_device_source_info{source=\"cpu\"} 1\n",
            "framescale_exporter_device_errors_total{reason=\"process_gone\"} 0\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains(&format!("framescale_gpu_memory_used_bytes{{{b}}}")));
        assert!(text.contains("framescale_exporter_device_poll_age_seconds 1\n"));
        // The source hangs: past three intervals (4.5 s) nobody renewed them; they are missing.
        let hung = render_at(NOW + 4_000);
        assert!(hung.contains("framescale_exporter_device_poll_age_seconds 5\n"));
        assert!(!hung.contains("framescale_gpu_duty_cycle_ratio{"), "{hung}");
        assert!(
            !hung.contains("framescale_gpu_memory_used_bytes{"),
            "{hung}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            series_labels("a\"b", "c\\d", "e\nf"),
            r#"namespace="a\"b",pod="c\\d",container="e\nf""#
        );
    }

    #[test]
    fn accept_header_picks_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
    }
}
