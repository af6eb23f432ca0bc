//! `coop.guild.node.*`: the node's own state.

pub mod get_peers;
pub mod get_status;
