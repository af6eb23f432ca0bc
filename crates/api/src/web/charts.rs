//! Charts for the dashboard, rendered on the server as SVG with `plotters` (its SVG backend:
//! text is SVG `<text>`, no font files), so they read without JavaScript. Each chart is
//! wrapped with `role="img"` and a label, for screen readers.

use plotters::prelude::*;

/// Why a chart could not be drawn.
#[derive(Debug)]
pub(crate) struct ChartError(pub String);

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// A bar per point (label, value), `unit` on the value axis; `label` names the chart for
/// assistive technology.
pub(crate) fn bars(
    points: &[(String, f64)],
    unit: &str,
    label: &str,
) -> Result<String, ChartError> {
    let n = points.len();
    let width = u32::try_from(n)
        .unwrap_or(u32::MAX)
        .saturating_mul(70)
        .clamp(420, 1200);
    let max = points
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 240)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(64)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..max * 1.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(RGBColor(220, 220, 220))
            .y_desc(unit)
            .x_labels(n.max(1))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => {
                    points.get(*i).map(|p| p.0.clone()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .axis_desc_style(("sans-serif", 12))
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(RGBColor(47, 111, 79).filled())
                    .margin(12)
                    .data(points.iter().enumerate().map(|(i, (_, v))| (i, *v))),
            )
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    let label = label.replace(['"', '<', '>', '&'], " ");
    // Scales to the page's width (a phone's too): the drawing keeps its viewBox.
    let sized = format!("width=\"{width}\" height=\"240\"");
    if !svg.contains(&sized) || !svg.contains("viewBox") {
        return Err(ChartError("plotters wrote an SVG of another shape".into()));
    }
    let svg = svg.replacen(
        &sized,
        &format!("width=\"100%\" style=\"max-width:{width}px;height:auto\""),
        1,
    );
    Ok(svg.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{label}\" "),
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_chart_is_svg_with_its_labels() {
        let svg = bars(
            &[("2026-11".into(), 120.5), ("2026-12".into(), 30.0)],
            "EUR",
            "Your amount per statement",
        )
        .unwrap();
        assert!(
            svg.starts_with("<svg role=\"img\" aria-label=\"Your amount per statement\""),
            "{svg}"
        );
        assert!(
            svg.contains("2026-11") && svg.contains("2026-12") && svg.contains("EUR"),
            "{svg}"
        );
        assert!(svg.contains("<rect"), "{svg}");
        assert!(
            svg.contains("width=\"100%\"") && svg.contains("viewBox"),
            "{svg}"
        );
        // Nothing, or zeros, draw an empty chart, not an error.
        assert!(bars(&[], "EUR", "x").is_ok());
        assert!(bars(&[("a".into(), 0.0)], "EUR", "x").is_ok());
    }
}
