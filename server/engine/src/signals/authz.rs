//! The `authz` family (contract §3.13): role bindings matched against identity headers.
//!
//! Owns reading the user id and groups from the configured headers (groups: a
//! comma-separated list, trimmed, empties dropped) and matching bindings. A binding matches
//! when one of its users equals the user id or one of its groups is among the user's
//! groups. Output is both the matched bindings (for projections) and the granted roles
//! (decision leaves reference roles). With bindings declared and no user id, evaluation
//! fails unless `fail_open`; headers are trusted only because the proxy strips them from
//! untrusted clients.
//! `Engine::read_headers` lists the two headers: callers may pass the engine only those.

use vllm_sr_config::model::global::Authz;
use vllm_sr_config::model::RoleBinding;

use crate::request::RequestView;
use crate::state::FamilyResult;

#[derive(Debug)]
struct Binding {
    users: Vec<String>,
    groups: Vec<String>,
    /// Index into `Signals::roles`.
    role: Option<usize>,
}

/// The role bindings of a recipe.
#[derive(Debug)]
pub struct AuthzSignals {
    bindings: Vec<Binding>,
    user_header: String,
    groups_header: String,
    fail_open: bool,
}

impl AuthzSignals {
    /// Resolves each binding's role against `roles` (the recipe's distinct roles).
    pub fn build(bindings: &[RoleBinding], roles: &[String], authz: &Authz) -> Self {
        Self {
            bindings: bindings
                .iter()
                .map(|b| Binding {
                    users: b.users.clone(),
                    groups: b.groups.clone(),
                    role: roles.iter().position(|r| *r == b.role),
                })
                .collect(),
            user_header: authz.identity.user_id_header.clone(),
            groups_header: authz.identity.user_groups_header.clone(),
            fail_open: authz.fail_open,
        }
    }

    /// Matches bindings and grants roles (`roles_out` is indexed like `Signals::roles`).
    /// Returns an error message when bindings exist, the user id header is empty and
    /// `fail_open` is off; nothing matches then.
    pub fn eval(
        &self,
        req: &RequestView,
        out: &mut FamilyResult,
        roles_out: &mut [bool],
    ) -> Result<(), String> {
        if self.bindings.is_empty() {
            return Ok(());
        }
        let user = req.header(&self.user_header).map(str::trim).unwrap_or("");
        if user.is_empty() {
            if self.fail_open {
                return Ok(());
            }
            return Err(format!(
                "authz: role bindings are configured but the `{}` header is empty",
                self.user_header
            ));
        }
        let groups: Vec<&str> = req
            .header(&self.groups_header)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        for (i, b) in self.bindings.iter().enumerate() {
            let matched = b.users.iter().any(|u| u == user)
                || b.groups.iter().any(|g| groups.contains(&g.as_str()));
            if matched {
                out.hit(i, None);
                if let Some(slot) = b.role.and_then(|r| roles_out.get_mut(r)) {
                    *slot = true;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vllm_sr_config::model::global::AuthzIdentity;

    fn signals(fail_open: bool) -> (AuthzSignals, Vec<String>) {
        let b = |n: &str, role: &str, users: &[&str], groups: &[&str]| RoleBinding {
            name: n.into(),
            role: role.into(),
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        };
        let bindings = vec![
            b("admins", "admin", &["alice"], &["ops"]),
            b("devs", "developer", &[], &["eng", "ml"]),
            b("bob_dev", "developer", &["bob"], &[]),
        ];
        let roles = vec!["admin".to_string(), "developer".to_string()];
        let authz = Authz {
            fail_open,
            identity: AuthzIdentity {
                user_id_header: "x-authz-user-id".into(),
                user_groups_header: "x-authz-user-groups".into(),
            },
        };
        (AuthzSignals::build(&bindings, &roles, &authz), roles)
    }

    /// (matched binding names, granted roles) or the error.
    fn check(fail_open: bool, headers: &[(&str, &str)], expected: Result<(&[&str], &[&str]), ()>) {
        let (s, roles) = signals(fail_open);
        let names = ["admins", "devs", "bob_dev"];
        let req = RequestView::from_text("hi").with_headers(headers.iter().copied());
        let mut out = FamilyResult::new(3);
        let mut granted = vec![false; roles.len()];
        let got = s.eval(&req, &mut out, &mut granted).map(|()| {
            let m: Vec<&str> = out.matched.iter().map(|&i| names[i as usize]).collect();
            let r: Vec<&str> = roles
                .iter()
                .zip(&granted)
                .filter(|(_, g)| **g)
                .map(|(r, _)| r.as_str())
                .collect();
            (m, r)
        });
        match (got, expected) {
            (Ok((m, r)), Ok((em, er))) => {
                assert_eq!((m.as_slice(), r.as_slice()), (em, er), "{headers:?}")
            }
            (Err(_), Err(())) => {}
            (g, e) => panic!("{headers:?}: got {g:?}, want {e:?}"),
        }
    }

    #[test]
    fn bindings() {
        check(
            false,
            &[("x-authz-user-id", "alice")],
            Ok((&["admins"], &["admin"])),
        );
        check(
            false,
            &[
                ("X-Authz-User-Id", "carol"),
                ("x-authz-user-groups", " ml , x"),
            ],
            Ok((&["devs"], &["developer"])),
        );
        check(
            false,
            &[
                ("x-authz-user-id", "bob"),
                ("x-authz-user-groups", "ops,eng"),
            ],
            Ok((&["admins", "devs", "bob_dev"], &["admin", "developer"])),
        );
        check(
            false,
            &[("x-authz-user-id", "dave"), ("x-authz-user-groups", "")],
            Ok((&[], &[])),
        );
        // Group names are exact (no case folding, no substring).
        check(
            false,
            &[
                ("x-authz-user-id", "dave"),
                ("x-authz-user-groups", "Eng,engineering"),
            ],
            Ok((&[], &[])),
        );
        check(false, &[("x-authz-user-groups", "ops")], Err(()));
        check(false, &[("x-authz-user-id", "  ")], Err(()));
        check(true, &[("x-authz-user-groups", "ops")], Ok((&[], &[])));
    }
}
