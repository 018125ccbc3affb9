//! The 12 COCO summary numbers, printed exactly as pycocotools prints them.

use serde::{Deserialize, Serialize};

/// pycocotools' `COCOeval.stats`, by name. Fractions in `[0, 1]`; `-1.0` where pycocotools
/// gives -1 (no ground truth in that slice).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CocoStats {
    /// AP @ IoU 0.50:0.95, all areas, 100 detections.
    #[serde(rename = "AP")]
    pub ap: f64,
    /// AP @ IoU 0.50.
    #[serde(rename = "AP50")]
    pub ap50: f64,
    /// AP @ IoU 0.75.
    #[serde(rename = "AP75")]
    pub ap75: f64,
    /// AP for small objects (area <= 32^2).
    #[serde(rename = "APs")]
    pub ap_small: f64,
    /// AP for medium objects (32^2 <= area <= 96^2).
    #[serde(rename = "APm")]
    pub ap_medium: f64,
    /// AP for large objects (area >= 96^2).
    #[serde(rename = "APl")]
    pub ap_large: f64,
    /// AR with 1 detection per image.
    #[serde(rename = "AR1")]
    pub ar1: f64,
    /// AR with 10 detections per image.
    #[serde(rename = "AR10")]
    pub ar10: f64,
    /// AR with 100 detections per image.
    #[serde(rename = "AR100")]
    pub ar100: f64,
    /// AR for small objects.
    #[serde(rename = "ARs")]
    pub ar_small: f64,
    /// AR for medium objects.
    #[serde(rename = "ARm")]
    pub ar_medium: f64,
    /// AR for large objects.
    #[serde(rename = "ARl")]
    pub ar_large: f64,
}

/// The summary rows: (AP?, IoU label, area label, maxDets), in `stats` order.
const ROWS: [(bool, &str, &str, usize); 12] = [
    (true, "0.50:0.95", "all", 100),
    (true, "0.50", "all", 100),
    (true, "0.75", "all", 100),
    (true, "0.50:0.95", "small", 100),
    (true, "0.50:0.95", "medium", 100),
    (true, "0.50:0.95", "large", 100),
    (false, "0.50:0.95", "all", 1),
    (false, "0.50:0.95", "all", 10),
    (false, "0.50:0.95", "all", 100),
    (false, "0.50:0.95", "small", 100),
    (false, "0.50:0.95", "medium", 100),
    (false, "0.50:0.95", "large", 100),
];

impl CocoStats {
    /// The numbers in pycocotools' `stats` order.
    pub fn to_array(&self) -> [f64; 12] {
        [
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ar1,
            self.ar10,
            self.ar100,
            self.ar_small,
            self.ar_medium,
            self.ar_large,
        ]
    }

    /// The key names of [`Self::to_array`], as the JSON output spells them.
    pub const KEYS: [&'static str; 12] = [
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    ];

    /// The 12 lines `COCOeval.summarize()` prints, each ending in `\n`, byte for byte.
    ///
    /// pycocotools' format is `' {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] =
    /// {:0.3f}'`; Rust's `{:.3}` rounds the exact binary value half to even, as Python does.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for ((ap, iou, area, max_det), v) in ROWS.iter().zip(self.to_array()) {
            let (title, kind) = if *ap {
                ("Average Precision", "(AP)")
            } else {
                ("Average Recall", "(AR)")
            };
            out.push_str(&format!(
                " {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={max_det:>3} ] = \
                 {v:.3}\n"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_decimals_round_like_python() {
        // Python: '{:0.3f}'.format(v) for these exact binary halves and -1.
        for (v, s) in [
            (0.0625, "0.062"),
            (0.1875, "0.188"),
            (0.3125, "0.312"),
            (-1.0, "-1.000"),
        ] {
            assert_eq!(format!("{v:.3}"), s);
        }
    }

    #[test]
    fn summary_layout_matches_pycocotools() {
        let s = CocoStats {
            ap: 0.5,
            ap50: -1.0,
            ap75: 0.25,
            ap_small: 0.0,
            ap_medium: 0.1,
            ap_large: 0.2,
            ar1: 0.3,
            ar10: 0.4,
            ar100: 0.45,
            ar_small: 0.5,
            ar_medium: 0.6,
            ar_large: 0.7,
        };
        let text = s.summary();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 12);
        // Lines as pycocotools 2.0.11 prints them.
        assert_eq!(
            lines[0],
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.500"
        );
        assert_eq!(
            lines[1],
            " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = -1.000"
        );
        assert_eq!(
            lines[6],
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.300"
        );
        assert_eq!(
            lines[10],
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.600"
        );
    }
}
