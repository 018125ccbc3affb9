//! COCO results JSON writer.
