//! Debian's `chromium`, headless: a screenshot of a local page, decoded, to check what a reader
//! sees (the charts are drawn, in their colours) rather than what the HTML says.

use std::path::Path;
use std::process::{Command, Stdio};

/// A screenshot: `width × height` RGB pixels.
pub struct Screenshot {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    rgb: Vec<u8>,
}

impl Screenshot {
    /// How many pixels are exactly `color`.
    pub fn count(&self, color: (u8, u8, u8)) -> usize {
        self.rgb
            .chunks_exact(3)
            .filter(|p| (p[0], p[1], p[2]) == color)
            .count()
    }

    /// How many pixels are neither white nor near it.
    pub fn inked(&self) -> usize {
        self.rgb
            .chunks_exact(3)
            .filter(|p| p.iter().any(|c| *c < 200))
            .count()
    }
}

/// Opens `page` in headless Chromium at `width × height` and decodes its screenshot (kept next
/// to the page as `screenshot.png`). Panics if chromium is not installed: the test command
/// installs it.
pub fn screenshot(page: &Path, width: u32, height: u32) -> Screenshot {
    let chromium = super::which("chromium")
        .or_else(|| super::which("chromium-browser"))
        .expect("chromium is not installed (scripts/test installs Debian's)");
    let shot = page.with_file_name("screenshot.png");
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success() && shot.exists(),
        "chromium made no screenshot: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut data = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut data).unwrap();
    data.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    let rgb = data
        .chunks_exact(channels)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Screenshot {
        width: info.width,
        height: info.height,
        rgb,
    }
}
