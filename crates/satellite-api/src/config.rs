//! The `[storage]` section of a satellite's configuration: the storage network API
//! and the background work that comes with it.

use crate::service::StorageConfig;
use orbit_satellite_model::nodes::SelectionConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `[storage]` section. Every key has a default; unknown keys are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// The satellite's identity file, relative to the data dir; created if missing.
    pub identity: PathBuf,
    /// Seconds since its last check-in within which a node counts as online.
    pub online_window_s: u64,
    /// At most one node per /24 network per segment (turn off for one-machine networks).
    pub distinct_networks: bool,
    /// Check-ins signed further than this from the satellite's clock are refused, s.
    pub check_in_skew_s: u64,
    /// How often storage nodes are asked to check in, seconds.
    pub check_in_interval_s: u64,
    /// Largest encrypted segment kept inline in the metainfo, bytes.
    pub max_inline: usize,
    /// Largest piece, bytes.
    pub max_piece: u64,
    /// How long an order limit stays valid, seconds.
    pub order_expiration_s: u64,
    /// Uploads begun this many seconds ago and never committed are deleted.
    pub abandoned_upload_s: u64,
    /// How often expired serials and abandoned uploads are swept, seconds.
    pub sweep_interval_s: u64,
    /// How often the node selection cache reads the node table again, seconds.
    pub selection_refresh_s: u64,
    /// Share of each upload's nodes, percent, that goes to nodes still being vetted.
    pub new_node_percent: u32,
}

impl Default for StorageSection {
    fn default() -> Self {
        let selection = SelectionConfig::default();
        let limits = StorageConfig::default();
        StorageSection {
            identity: PathBuf::from("satellite.key"),
            online_window_s: selection.online_window_s,
            distinct_networks: selection.distinct_networks,
            check_in_skew_s: selection.check_in_skew_s,
            check_in_interval_s: limits.check_in_interval_s,
            max_inline: limits.max_inline,
            max_piece: limits.max_piece,
            order_expiration_s: 3600,
            abandoned_upload_s: 24 * 3600,
            sweep_interval_s: 600,
            selection_refresh_s: 30,
            new_node_percent: selection.new_node_percent,
        }
    }
}

impl StorageSection {
    /// How nodes are selected.
    pub fn selection(&self) -> SelectionConfig {
        SelectionConfig {
            online_window_s: self.online_window_s,
            distinct_networks: self.distinct_networks,
            check_in_skew_s: self.check_in_skew_s,
            new_node_percent: self.new_node_percent,
        }
    }

    /// The API's limits.
    pub fn limits(&self) -> StorageConfig {
        StorageConfig {
            max_inline: self.max_inline,
            max_piece: self.max_piece,
            check_in_interval_s: self.check_in_interval_s,
        }
    }
}
