//! The synthetic backend: a small CPU path tracer. Its cost grows with pixels × samples — real
//! work that loads a CPU the way a render loads a GPU — and its output is a pure function of the
//! request (every random number comes from a generator seeded by frame, pixel and sample).
//!
//! The scene `spheres`: three diffuse spheres on a ground sphere under a sky, the camera turning
//! around them by 3° per frame. Paths bounce diffusely up to four times.

use std::f64::consts::PI;
use std::time::Instant;

use crate::frame::{FrameRequest, RenderError, Rendered, Renderer};
use crate::random::SplitMix;

/// The scenes the synthetic backend knows.
pub const SCENES: &[&str] = &["spheres"];

/// The synthetic backend as a [`Renderer`]: the frame rendered and encoded as PNG, timed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracer;

impl Renderer for Tracer {
    fn render(&self, request: &FrameRequest) -> Result<Rendered, RenderError> {
        if !SCENES.contains(&request.scene.as_str()) {
            return Err(RenderError::SceneNotFound(format!(
                "scene {:?} not found; the synthetic backend has {SCENES:?}",
                request.scene
            )));
        }
        let started = Instant::now();
        let image = render(
            request.frame,
            request.width,
            request.height,
            request.samples,
        );
        Ok(Rendered {
            png: png(&image),
            render_time: started.elapsed(),
        })
    }
}

/// An 8-bit RGB image, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height × 3` bytes.
    pub rgb: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Vec3(f64, f64, f64);

impl Vec3 {
    fn add(self, o: Vec3) -> Vec3 {
        Vec3(self.0 + o.0, self.1 + o.1, self.2 + o.2)
    }
    fn sub(self, o: Vec3) -> Vec3 {
        Vec3(self.0 - o.0, self.1 - o.1, self.2 - o.2)
    }
    fn mul(self, k: f64) -> Vec3 {
        Vec3(self.0 * k, self.1 * k, self.2 * k)
    }
    fn times(self, o: Vec3) -> Vec3 {
        Vec3(self.0 * o.0, self.1 * o.1, self.2 * o.2)
    }
    fn dot(self, o: Vec3) -> f64 {
        self.0 * o.0 + self.1 * o.1 + self.2 * o.2
    }
    fn cross(self, o: Vec3) -> Vec3 {
        Vec3(
            self.1 * o.2 - self.2 * o.1,
            self.2 * o.0 - self.0 * o.2,
            self.0 * o.1 - self.1 * o.0,
        )
    }
    fn unit(self) -> Vec3 {
        self.mul(1.0 / self.dot(self).sqrt())
    }
}

struct Sphere {
    center: Vec3,
    radius: f64,
    albedo: Vec3,
}

const SPHERES: [Sphere; 4] = [
    Sphere {
        center: Vec3(0.0, -1000.0, 0.0),
        radius: 1000.0,
        albedo: Vec3(0.5, 0.5, 0.45),
    },
    Sphere {
        center: Vec3(0.0, 1.0, 0.0),
        radius: 1.0,
        albedo: Vec3(0.8, 0.3, 0.2),
    },
    Sphere {
        center: Vec3(-2.2, 0.7, 0.6),
        radius: 0.7,
        albedo: Vec3(0.2, 0.5, 0.8),
    },
    Sphere {
        center: Vec3(2.0, 0.5, -0.4),
        radius: 0.5,
        albedo: Vec3(0.3, 0.8, 0.3),
    },
];

const MAX_BOUNCES: u32 = 4;

/// Renders `frame` of the `spheres` scene at `width × height` with `samples` paths per pixel.
#[must_use]
pub fn render(frame: u64, width: u32, height: u32, samples: u32) -> Image {
    let angle = frame as f64 * 3.0_f64.to_radians();
    let eye = Vec3(7.0 * angle.sin(), 2.5, 7.0 * angle.cos());
    let forward = Vec3(0.0, 0.8, 0.0).sub(eye).unit();
    let right = forward.cross(Vec3(0.0, 1.0, 0.0)).unit();
    let up = right.cross(forward);
    let half_height = (25.0_f64.to_radians()).tan();
    let aspect = f64::from(width) / f64::from(height);
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            let mut rng = SplitMix::new(
                frame
                    .wrapping_mul(0x1000_0000_01B3)
                    .wrapping_add(u64::from(y) << 32 | u64::from(x)),
            );
            let mut color = Vec3(0.0, 0.0, 0.0);
            for _ in 0..samples {
                let u = (2.0 * (f64::from(x) + rng.next_f64()) / f64::from(width) - 1.0)
                    * half_height
                    * aspect;
                let v =
                    (1.0 - 2.0 * (f64::from(y) + rng.next_f64()) / f64::from(height)) * half_height;
                let direction = forward.add(right.mul(u)).add(up.mul(v)).unit();
                color = color.add(trace(eye, direction, &mut rng));
            }
            let color = color.mul(1.0 / f64::from(samples));
            for channel in [color.0, color.1, color.2] {
                rgb.push((channel.clamp(0.0, 1.0).powf(1.0 / 2.2) * 255.0 + 0.5) as u8);
            }
        }
    }
    Image { width, height, rgb }
}

fn trace(mut origin: Vec3, mut direction: Vec3, rng: &mut SplitMix) -> Vec3 {
    let mut throughput = Vec3(1.0, 1.0, 1.0);
    for _ in 0..=MAX_BOUNCES {
        let Some((t, sphere)) = nearest_hit(origin, direction) else {
            return throughput.times(sky(direction));
        };
        let point = origin.add(direction.mul(t));
        let normal = point.sub(sphere.center).mul(1.0 / sphere.radius);
        throughput = throughput.times(sphere.albedo);
        origin = point.add(normal.mul(1e-6));
        direction = cosine_sample(normal, rng);
    }
    Vec3(0.0, 0.0, 0.0)
}

fn nearest_hit(origin: Vec3, direction: Vec3) -> Option<(f64, &'static Sphere)> {
    let mut nearest: Option<(f64, &Sphere)> = None;
    for sphere in &SPHERES {
        let oc = origin.sub(sphere.center);
        let b = oc.dot(direction);
        let c = oc.dot(oc) - sphere.radius * sphere.radius;
        let discriminant = b * b - c;
        if discriminant < 0.0 {
            continue;
        }
        let root = discriminant.sqrt();
        let t = if -b - root > 1e-9 {
            -b - root
        } else {
            -b + root
        };
        if t > 1e-9 && nearest.is_none_or(|(best, _)| t < best) {
            nearest = Some((t, sphere));
        }
    }
    nearest
}

fn sky(direction: Vec3) -> Vec3 {
    let t = 0.5 * (direction.1 + 1.0);
    Vec3(1.0, 1.0, 1.0)
        .mul(1.0 - t)
        .add(Vec3(0.5, 0.7, 1.0).mul(t))
}

/// A direction around `normal`, cosine-weighted.
fn cosine_sample(normal: Vec3, rng: &mut SplitMix) -> Vec3 {
    let (r1, r2) = (rng.next_f64(), rng.next_f64());
    let phi = 2.0 * PI * r1;
    let radius = r2.sqrt();
    let helper = if normal.0.abs() > 0.9 {
        Vec3(0.0, 1.0, 0.0)
    } else {
        Vec3(1.0, 0.0, 0.0)
    };
    let tangent = helper.cross(normal).unit();
    let bitangent = normal.cross(tangent);
    tangent
        .mul(radius * phi.cos())
        .add(bitangent.mul(radius * phi.sin()))
        .add(normal.mul((1.0 - r2).sqrt()))
        .unit()
}

/// Encodes `image` as PNG.
///
/// # Panics
/// If `image.rgb` does not hold `width × height × 3` bytes.
#[must_use]
pub fn png(image: &Image) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Writing to a Vec cannot fail, and the data has exactly the declared size.
    let mut writer = encoder.write_header().expect("PNG header into memory");
    writer
        .write_image_data(&image.rgb)
        .expect("PNG data of the declared size");
    drop(writer);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_a_function_of_the_request() {
        let a = render(7, 24, 16, 3);
        assert_eq!(a, render(7, 24, 16, 3));
        assert_ne!(
            a.rgb,
            render(8, 24, 16, 3).rgb,
            "the camera moves per frame"
        );
        assert_eq!(a.rgb.len(), 24 * 16 * 3);
        // Not a blank image: sky, ground and spheres differ.
        let distinct: std::collections::BTreeSet<&[u8]> = a.rgb.chunks(3).collect();
        assert!(distinct.len() > 20, "{}", distinct.len());
    }

    #[test]
    fn png_round_trips() {
        let image = render(1, 8, 6, 1);
        let bytes = png(&image);
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut data = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut data).unwrap();
        assert_eq!((info.width, info.height), (8, 6));
        assert_eq!(&data[..info.buffer_size()], &image.rgb[..]);
    }
}
