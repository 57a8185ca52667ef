//! Stable places for balancers and members across configuration reloads: a balancer is known by
//! its name, a member by its balancer's name and its URL (the n-th member with the same URL in a
//! balancer by that and n). Statistics, histograms, admin state and health state are kept by
//! place, so a member a reload leaves unchanged keeps all of them, and a request that began on an
//! older generation records into the right member after a newer one is adopted.
//!
//! Owns: the identity → place registry (on the board, extended only by the main thread when it
//! publishes a generation) and each generation's `Layout`. Must never: give one place to two
//! identities or reuse a place (a removed member's place stays unused, so late records from
//! requests of an old generation land where nobody reads them rather than on another member).

use crate::config::Config;

/// `[balancer index][member index]` → place, and `[balancer index]` → place, for one generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub balancers: Vec<usize>,
    pub members: Vec<Vec<usize>>,
}

impl Layout {
    /// The place of member `m` of balancer `b`.
    pub fn member(&self, b: usize, m: usize) -> usize {
        self.members[b][m]
    }
}

/// Every identity ever given a place, in place order.
#[derive(Debug, Default)]
pub struct Registry {
    balancers: Vec<String>,
    /// (balancer name, member URL, occurrence of that URL in the balancer).
    members: Vec<(String, String, usize)>,
}

impl Registry {
    /// Places for `config`'s balancers and members: the ones they had, new ones for identities
    /// not seen before.
    pub fn assign(&mut self, config: &Config) -> Layout {
        let mut layout = Layout::default();
        for b in &config.balancers {
            layout.balancers.push(place(&mut self.balancers, &b.name));
            let mut places = Vec::with_capacity(b.members.len());
            for (i, m) in b.members.iter().enumerate() {
                let url = &m.url;
                let nth = b.members[..i].iter().filter(|o| &o.url == url).count();
                places.push(place(
                    &mut self.members,
                    &(b.name.clone(), url.clone(), nth),
                ));
            }
            layout.members.push(places);
        }
        layout
    }

    /// How many member places exist.
    pub fn member_places(&self) -> usize {
        self.members.len()
    }

    /// How many balancer places exist.
    pub fn balancer_places(&self) -> usize {
        self.balancers.len()
    }
}

fn place<T: PartialEq + Clone>(known: &mut Vec<T>, id: &T) -> usize {
    match known.iter().position(|k| k == id) {
        Some(i) => i,
        None => {
            known.push(id.clone());
            known.len() - 1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(members: &str) -> Config {
        Config::parse(&format!(
            "[[listen]]\naddress = \"127.0.0.1:1\"\n[[balancer]]\nname = \"b\"\nmembers = [{members}]\n\
             [[balancer]]\nname = \"c\"\nmembers = [{{ url = \"http://127.0.0.1:9\" }}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn unchanged_members_keep_their_place_and_removed_places_are_not_reused() {
        let mut r = Registry::default();
        let a = r.assign(&config(
            "{ url = \"http://127.0.0.1:9\" }, { url = \"http://127.0.0.1:10\" }",
        ));
        assert_eq!(a.members, vec![vec![0, 1], vec![2]]);
        assert_eq!(a.balancers, vec![0, 1]);
        // Reordered, one removed, one added: the kept one keeps its place, the new one gets a new
        // place (not the removed one's).
        let b = r.assign(&config(
            "{ url = \"http://127.0.0.1:11\" }, { url = \"http://127.0.0.1:10\" }",
        ));
        assert_eq!(b.members, vec![vec![3, 1], vec![2]]);
        // The same URL twice in one balancer: two identities.
        let c = r.assign(&config(
            "{ url = \"http://127.0.0.1:10\" }, { url = \"http://127.0.0.1:10\" }",
        ));
        assert_eq!(c.members, vec![vec![1, 4], vec![2]]);
        assert_eq!(r.member_places(), 5);
        assert_eq!(r.balancer_places(), 2);
    }
}
