//! SVG plots of `bench` results: ratios of the arms per buffer size, and the
//! cost of a pin per page against the size.

use crate::bench::{Pair, IMPORT_OPS};
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::Path;

/// One line of a plot: a label and its (size in MiB, value) points.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// The memory kind and the buffer size in MiB of a case: `thp 64M` (pin) or
/// `4K-256M` (udmabuf).
pub fn case_size(case: &str) -> Option<(&str, f64)> {
    let (mem, size) = case.split_once([' ', '-'])?;
    Some((mem, size.strip_suffix('M')?.parse().ok()?))
}

/// Nanoseconds per 4 KiB page of a pin median (microseconds) over `size_mb`.
pub fn ns_per_page(median_us: f64, size_mb: f64) -> f64 {
    median_us * 1000.0 / (size_mb * 256.0)
}

/// Adds `point` to the series called `label`, which it creates if needed.
fn push_point(out: &mut Vec<Series>, label: String, point: (f64, f64)) {
    match out.iter_mut().find(|s| s.label == label) {
        Some(s) => s.points.push(point),
        None => out.push(Series {
            label,
            points: vec![point],
        }),
    }
}

fn sort_points(mut out: Vec<Series>) -> Vec<Series> {
    for s in &mut out {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The measures a ratio plot shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ratios {
    /// Pin and unpin (`pin-`).
    Pins,
    /// The udmabuf operations from user space: create, list, mmap.
    Udmabuf,
    /// The udmabuf operations of the in-kernel importer ([`IMPORT_OPS`]).
    Import,
}

impl Ratios {
    /// The plot of the measure `what`. page_pool's measures fall in
    /// `Udmabuf`, whose plot leaves them out: their case has no size.
    pub fn of(what: &str) -> Ratios {
        if what.starts_with("pin-") {
            Ratios::Pins
        } else if IMPORT_OPS.contains(&what) {
            Ratios::Import
        } else {
            Ratios::Udmabuf
        }
    }
}

/// Ratio of the arms against the size: of pin and unpin of each memory kind
/// and pair of arms (fd/fast, fd/folios) for `Ratios::Pins`, else rs/c of
/// each udmabuf operation of `which`.
pub fn ratio_series(pairs: &[Pair], which: Ratios) -> Vec<Series> {
    let mut out = Vec::new();
    for p in pairs.iter().filter(|p| Ratios::of(&p.what) == which) {
        let Some((mem, size)) = case_size(&p.case) else {
            continue;
        };
        let label = match which {
            Ratios::Pins => format!("{} {mem} {}/{}", p.what, p.arms[0], p.arms[1]),
            Ratios::Udmabuf | Ratios::Import => format!("{} {mem}", p.what),
        };
        push_point(&mut out, label, (size, p.ratio));
    }
    sort_points(out)
}

/// The cost per page of every arm's pin (get) of one memory kind and size.
pub struct PinCost {
    pub mem: String,
    pub size: f64,
    /// (arm, nanoseconds per page), each arm once.
    pub ns: Vec<(String, f64)>,
}

impl PinCost {
    pub fn of(&self, arm: &str) -> Option<f64> {
        self.ns.iter().find(|(a, _)| a == arm).map(|(_, v)| *v)
    }
}

/// The pin costs per page of the pairs, in the order of their cases.
pub fn pin_costs(pairs: &[Pair]) -> Vec<PinCost> {
    let mut out: Vec<PinCost> = Vec::new();
    for p in pairs.iter().filter(|p| p.what == "pin-get") {
        let Some((mem, size)) = case_size(&p.case) else {
            continue;
        };
        let i = match out.iter().position(|c| c.mem == mem && c.size == size) {
            Some(i) => i,
            None => {
                out.push(PinCost {
                    mem: mem.to_string(),
                    size,
                    ns: Vec::new(),
                });
                out.len() - 1
            }
        };
        for (arm, st) in p.arms.iter().zip(&p.stats) {
            if out[i].of(arm).is_none() {
                out[i].ns.push((arm.clone(), ns_per_page(st.median, size)));
            }
        }
    }
    out
}

/// Cost per page of each arm's pin (get) against the size.
pub fn pin_per_page_series(pairs: &[Pair]) -> Vec<Series> {
    let mut out = Vec::new();
    for c in pin_costs(pairs) {
        for (arm, ns) in c.ns {
            push_point(&mut out, format!("{arm} {}", c.mem), (c.size, ns));
        }
    }
    sort_points(out)
}

/// Draws `series` on a log-log or log-linear chart into an SVG file.
pub fn draw(
    path: &Path,
    title: &str,
    y_desc: &str,
    series: &[Series],
    log_y: bool,
    reference: Option<f64>,
) -> Result<()> {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite() && (!log_y || p.1 > 0.0);
    let series: Vec<Series> = series
        .iter()
        .map(|s| Series {
            label: s.label.clone(),
            points: s.points.iter().filter(finite).copied().collect(),
        })
        .collect();
    let pts = || series.iter().flat_map(|s| s.points.iter());
    if pts().next().is_none() {
        return Ok(());
    }
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let (mut y0, mut y1) = (reference.unwrap_or(f64::MAX), reference.unwrap_or(f64::MIN));
    for &(x, y) in pts() {
        (x0, x1) = (x0.min(x), x1.max(x));
        (y0, y1) = (y0.min(y), y1.max(y));
    }
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let err = |e| anyhow!("cannot draw {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root);
    chart
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60);
    let x = (x0 / 1.5..x1 * 1.5).log_scale();
    // One function per axis kind; both take the same drawing steps.
    macro_rules! lines {
        ($chart:expr) => {{
            let mut c = $chart;
            c.configure_mesh()
                .x_desc("buffer size (MiB)")
                .y_desc(y_desc)
                .draw()
                .map_err(err)?;
            if let Some(r) = reference {
                c.draw_series(LineSeries::new([(x0 / 1.5, r), (x1 * 1.5, r)], &BLACK))
                    .map_err(err)?;
            }
            for (i, s) in series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                c.draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                    .map_err(err)?
                    .label(&s.label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
                c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(err)?;
            }
            c.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }};
    }
    if log_y {
        lines!(chart
            .build_cartesian_2d(x, (y0 / 1.5..y1 * 1.5).log_scale())
            .map_err(err)?);
    } else {
        let pad = (y1 - y0).max(0.1) * 0.1;
        lines!(chart
            .build_cartesian_2d(x, (y0 - pad).max(0.0)..y1 + pad)
            .map_err(err)?);
    }
    root.present().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{pairs, parse_samples};

    #[test]
    fn cases_and_costs() {
        assert_eq!(case_size("thp 64M"), Some(("thp", 64.0)));
        assert_eq!(case_size("2M-256M"), Some(("2M", 256.0)));
        assert_eq!(case_size("x"), None);
        // 2 MiB = 512 pages: 512 us is 1000 ns a page.
        assert_eq!(ns_per_page(512.0, 2.0), 1000.0);
    }

    #[test]
    fn series_per_memory_kind() {
        let samples = parse_samples(
            "PIN 4k 64M fd 100 50\nPIN 4k 64M fast 200 100\n\
             PIN 4k 2M fd 4 2\nPIN 4k 2M fast 2 1\nPIN hugetlb 2M fd 1 1\nPIN hugetlb 2M fast 1 1\n\
             UDMABUF 4K-2M create+close c 10\nUDMABUF 4K-2M create+close rs 9\n\
             UDMABUF 4K-2M vmap+vunmap c 10\nUDMABUF 4K-2M vmap+vunmap rs 8\n\
             UDMABUF 4K-256M vmap+vunmap c 1000\nUDMABUF 4K-256M vmap+vunmap rs 500\n\
             UDMABUF 2M-2M map+unmap c 4\nUDMABUF 2M-2M map+unmap rs 5\n\
             PP provider-path c 300\nPP provider-path rs 306\n",
        );
        let p = pairs(&samples);
        let u = ratio_series(&p, Ratios::Udmabuf);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].label, "create+close 4K");
        // The importer's operations have a plot of their own.
        let i = ratio_series(&p, Ratios::Import);
        let labels: Vec<&str> = i.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["map+unmap 2M", "vmap+vunmap 4K"]);
        assert_eq!(i[1].points, vec![(2.0, 0.8), (256.0, 0.5)]);
        assert_eq!(i[0].points, vec![(2.0, 1.25)]);
        let r = ratio_series(&p, Ratios::Pins);
        let get4k = r.iter().find(|s| s.label == "pin-get 4k fd/fast").unwrap();
        assert_eq!(get4k.points, vec![(2.0, 2.0), (64.0, 0.5)]);
        let c = pin_per_page_series(&p);
        let fast4k = c.iter().find(|s| s.label == "fast 4k").unwrap();
        assert_eq!(fast4k.points[1], (64.0, ns_per_page(200.0, 64.0)));
        assert!(c.iter().any(|s| s.label == "fd hugetlb"));

        let dir = tempfile::tempdir().unwrap();
        let svg = dir.path().join("r.svg");
        draw(&svg, "t", "ratio", &r, false, Some(1.0)).unwrap();
        draw(&dir.path().join("c.svg"), "t", "ns", &c, true, None).unwrap();
        let text = std::fs::read_to_string(svg).unwrap();
        assert!(text.contains("<svg") && text.contains("pin-get 4k fd/fast"));
    }
}
