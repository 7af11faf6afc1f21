//! Record dissemination: delta push with one forward per new record, and push-pull
//! anti-entropy over per-writer summaries (see `sync`).

use std::net::SocketAddr;

use super::Grants;
use super::sync::offer;
use super::wire::{self, Message};
use super::{Core, Output, Replica, admit};
use crate::catalog::{Body, Record};

impl<R: Replica> Core<R> {
    pub(super) fn on_message(&mut self, peer: &str, from: SocketAddr, bytes: &[u8], grants: &Grants) {
        let (claimed, msg) = match wire::decode_message(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(peer, %from, error = %e, "bad gossip message");
                self.stats.bad_messages += 1;
                return;
            }
        };
        if claimed != peer {
            tracing::warn!(peer, claimed, %from, "message claims another sender; dropped");
            self.stats.impersonations += 1;
            return;
        }
        self.heard_from(peer);
        self.note_grants(peer, grants);
        // Reply to the advertised address: `from` may be an ephemeral client port.
        let reply_to = self.book.addr(peer).unwrap_or(from);
        match msg {
            Message::Delta(records) => {
                let records = self.in_scope(records, grants);
                let new = self.merge(records);
                if !new.is_empty() {
                    let sent = self.spread(new, Some(peer));
                    self.stats.deltas_forwarded += sent;
                }
            }
            Message::Pull(theirs) => {
                let mine = self.digest_for(grants);
                let answer = offer(&self.replica, grants, &mine, &theirs, false);
                if !answer.records.is_empty() || !answer.need.is_empty() {
                    let need = (!answer.need.is_empty()).then_some(answer.need);
                    self.send(reply_to, &Message::Push { records: answer.records, digest: need });
                    self.stats.pushes_sent += 1;
                }
            }
            Message::Push { records, digest } => {
                let records = self.in_scope(records, grants);
                self.merge(records);
                if let Some(need) = digest {
                    let mine = self.digest_for(grants);
                    let answer = offer(&self.replica, grants, &mine, &need, true);
                    if !answer.records.is_empty() {
                        self.send(reply_to, &Message::Push { records: answer.records, digest: None });
                        self.stats.pushes_sent += 1;
                    }
                }
            }
        }
    }

    /// The anti-entropy tick: my digest to one random active member.
    pub(super) fn pull(&mut self) {
        if let Some(&(to, ref name)) = self.pick_alive(1, None).first() {
            let grants = self.grants_of(name);
            let digest = self.digest_for(&grants);
            self.send(to, &Message::Pull(digest));
            self.stats.pulls_sent += 1;
        }
    }

    /// Authority check, then last-writer-wins merge; returns the records new here.
    pub(super) fn merge(&mut self, records: Vec<Record>) -> Vec<Record> {
        let book = &self.book;
        let role_of = |w: &str| book.role(w);
        let total = records.len();
        // A record is checked once, when it is new here: resends cost no validation (nor a
        // component's hashing).
        let records: Vec<Record> = records.into_iter().filter(|r| self.replica.holds(&r.key, &r.version) || !self.stats.refuse_invalid(r)).collect();
        let admitted: Vec<Record> = records.into_iter().filter(|r| admit(r, &role_of)).collect();
        self.stats.rejected_records += (total - admitted.len()) as u64;
        let new = self.replica.merge(admitted, &role_of);
        if !new.is_empty() {
            self.stats.records_merged += new.len() as u64;
            self.out.push(Output::Merged(new.len()));
        }
        new
    }

    /// Pushes a delta to `fanout` random active members (not `exclude`); returns how many.
    pub(super) fn spread(&mut self, records: Vec<Record>, exclude: Option<&str>) -> u64 {
        let targets = self.pick_alive(self.cfg.fanout, exclude);
        let me = self.swim.identity().name.clone();
        let bytes = wire::encode_message(&me, &Message::Delta(records.clone()));
        let mut sent = 0;
        for (to, name) in &targets {
            let grants = self.grants_of(name);
            if records.iter().all(|r| super::visible(r, &grants)) {
                self.out.push(Output::Message { to: *to, bytes: bytes.clone() });
            } else {
                let theirs: Vec<Record> = records.iter().filter(|r| super::visible(r, &grants)).cloned().collect();
                if theirs.is_empty() {
                    continue;
                }
                self.out.push(Output::Message { to: *to, bytes: wire::encode_message(&me, &Message::Delta(theirs)) });
            }
            sent += 1;
        }
        sent
    }

    pub(super) fn send(&mut self, to: SocketAddr, m: &Message) {
        let bytes = wire::encode_message(&self.swim.identity().name, m);
        self.out.push(Output::Message { to, bytes });
    }
}

impl super::CoreStats {
    /// A record is held to the rules of a local write (`catalog::validate::record`): a plugin whose
    /// bytes do not match the size and sha256 its record states (corrupted or truncated on the
    /// way) and any record a local write would refuse — a 2 KiB attribute, a name with a slash, a
    /// key that does not match its body — are refused and counted, before the authority check.
    fn refuse_invalid(&mut self, r: &Record) -> bool {
        match crate::catalog::validate::record(r) {
            Ok(()) => false,
            Err(e) => {
                if let Some(Body::Plugin(p)) = &r.body {
                    tracing::warn!(plugin = %p.name, writer = %r.version.writer, error = %e, "refused a plugin record from the mesh");
                    self.corrupt_plugins += 1;
                } else {
                    tracing::warn!(key = %r.key, writer = %r.version.writer, error = %e, "refused an invalid record from the mesh");
                    self.invalid_records += 1;
                }
                true
            }
        }
    }
}
