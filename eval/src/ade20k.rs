//! ADE20K mIoU.
