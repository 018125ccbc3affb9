//! The training config file: it parses, survives a JSON round trip unchanged (a resumed run
//! compares it with the stored one), and is also a plain detector config for `pvt detect`.

mod common;

use pvt_train::trainer::{TrainConfig, TrainSettings};
use pvt_zoo::RetinaNetConfig;

#[test]
fn synth_config_round_trips_and_is_a_detector_config() {
    let cfg = common::synth_config();
    assert_eq!(cfg.model.num_classes, 6);
    let json = serde_json::to_string_pretty(&cfg).unwrap();
    let back: TrainConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
    let det: RetinaNetConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(det, cfg.model);
    // the 1x settings
    let s = TrainSettings::mmdet_1x();
    assert_eq!((s.epochs, s.batch_size, s.optimizer.lr), (12, 2, 1e-4));
    assert_eq!(s.schedule.steps, vec![8, 11]);
}
