//! W3C TDMRep JSON (`/.well-known/tdmrep.json`): text and data mining rights are reserved
//! (`tdm-reservation: 1`) and `tdm-policy` points to the ODRL form, which says how to license.

use serde_json::json;

use super::Publication;
use crate::error::LicenceError;
use crate::terms::Contract;

/// The TDMRep form: one rule for the works' location.
pub fn tdmrep(c: &Contract, p: &Publication) -> Result<String, LicenceError> {
    let doc = json!([{
        "location": p.location,
        "tdm-reservation": 1,
        "tdm-policy": p.odrl_url(c),
    }]);
    super::pretty_json("tdmrep", &doc)
}
