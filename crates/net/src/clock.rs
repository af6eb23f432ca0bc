//! The time the engine reads: [`Clock`] lives in `guild-service`, so that the node hands one
//! clock to its engine, its API and its repo service; re-exported here as `guild_net::Clock`.

pub use guild_service::Clock;
