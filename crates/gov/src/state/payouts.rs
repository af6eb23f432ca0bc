//! Payout statements: a steward's statement of how a period's revenue is split.

use guild_core::Cid;
use guild_core::syntax::Did;

use super::{Reason, State};
use crate::body::StatementBody;

/// A payout statement's reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRef {
    /// The steward who published it.
    pub by: Did,
    /// The agreement it pays for, if one.
    pub agreement: Option<Cid>,
    /// The period id.
    pub period: String,
    /// The total, in minor units.
    pub total: i64,
    /// The currency.
    pub currency: String,
    /// How many lines.
    pub lines: usize,
}

impl State {
    /// The lines must pay members (current or former) and sum to the total.
    pub(super) fn authorize_statement(
        &self,
        author: &str,
        b: &StatementBody,
    ) -> Result<(), Reason> {
        self.steward(author)?;
        if let Some(a) = &b.agreement {
            self.agreement(&a.0, "agreement")?;
        }
        let mut sum: i128 = 0;
        for line in &b.lines {
            let member = line.member.as_str();
            if !self.members.contains_key(member) && !self.departed.contains_key(member) {
                return Err(Reason::BadPayout("a line pays a stranger"));
            }
            sum += i128::from(line.amount);
        }
        if sum != i128::from(b.total.amount) {
            return Err(Reason::BadPayout("lines do not sum to the total"));
        }
        Ok(())
    }

    pub(super) fn apply_statement(&mut self, author: Did, id: Cid, b: &StatementBody) {
        self.payouts.insert(
            id,
            PayoutRef {
                by: author,
                agreement: b.agreement.map(|a| a.0),
                period: b.period.id.clone(),
                total: b.total.amount,
                currency: b.total.currency.clone(),
                lines: b.lines.len(),
            },
        );
    }
}
