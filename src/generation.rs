//! A configuration generation: one loaded configuration, immutable once published on the board,
//! with the places (`layout`) of its balancers and members, the slots of its listeners and its
//! members' TLS client settings.
//! Generation 1 is the configuration ringlb started with; each successful reload publishes the
//! next.
//!
//! Owns: what a generation holds. Must never: change after it is published (cores and requests
//! in flight read it without a lock, through `Arc`s).

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{Config, ListenConfig};
use crate::layout::Layout;
use crate::tls::upstream::Upstreams;

pub struct Generation {
    pub number: u64,
    pub config: Arc<Config>,
    pub layout: Layout,
    pub listeners: ListenerSlots,
    /// The `https://` members' client settings; each core takes its own copy (`for_core`).
    pub member_tls: Upstreams,
    pub loaded_at: SystemTime,
}

impl Generation {
    pub fn new(
        number: u64,
        config: Arc<Config>,
        layout: Layout,
        listeners: ListenerSlots,
        member_tls: Upstreams,
    ) -> Self {
        Generation {
            number,
            config,
            layout,
            listeners,
            member_tls,
            loaded_at: SystemTime::now(),
        }
    }
}

/// A generation's listeners by slot (`listeners::Listeners`): what a connection's listener is
/// known by.
#[derive(Debug, Clone, Default)]
pub struct ListenerSlots {
    /// The slot of each `[[listen]]`.
    pub slots: Vec<usize>,
    /// The last settings of each listener a reload removed: its connections' last answers are
    /// given as it would have given them.
    pub removed: Vec<(usize, ListenConfig)>,
}

impl ListenerSlots {
    /// Slot i for the `[[listen]]` at index i, as at start.
    pub fn in_order(config: &Config) -> ListenerSlots {
        ListenerSlots {
            slots: (0..config.listen.len()).collect(),
            removed: Vec::new(),
        }
    }
}
