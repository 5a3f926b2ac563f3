//! The dependency graph: topological load order and cycle detection.
//!
//! Pure functions over names, so they are tested without any plugin.

use std::collections::HashMap;

/// Orders `nodes` (name, names it depends on) so that every node comes after
/// the nodes it depends on. Dependencies outside `nodes` are ignored (they
/// are already loaded, or reported missing elsewhere). On a cycle, returns
/// the cycle as a path of names that starts and ends with the same name.
pub fn topo_order(nodes: &[(String, Vec<String>)]) -> Result<Vec<usize>, Vec<String>> {
    let index: HashMap<&str, usize> = nodes.iter().enumerate().map(|(i, (n, _))| (n.as_str(), i)).collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut mark = vec![0u8; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    let mut path: Vec<usize> = Vec::new();

    fn visit(
        i: usize,
        nodes: &[(String, Vec<String>)],
        index: &HashMap<&str, usize>,
        mark: &mut [u8],
        order: &mut Vec<usize>,
        path: &mut Vec<usize>,
    ) -> Result<(), Vec<String>> {
        match mark[i] {
            2 => return Ok(()),
            1 => {
                let start = path.iter().position(|&p| p == i).expect("node on path");
                let mut cycle: Vec<String> = path[start..].iter().map(|&p| nodes[p].0.clone()).collect();
                cycle.push(nodes[i].0.clone());
                return Err(cycle);
            }
            _ => {}
        }
        mark[i] = 1;
        path.push(i);
        for dep in &nodes[i].1 {
            if let Some(&j) = index.get(dep.as_str()) {
                visit(j, nodes, index, mark, order, path)?;
            }
        }
        path.pop();
        mark[i] = 2;
        order.push(i);
        Ok(())
    }

    for i in 0..nodes.len() {
        visit(i, nodes, &index, &mut mark, &mut order, &mut path)?;
    }
    Ok(order)
}

/// [`topo_order`] where a cycle is not an error: on a cycle the nodes keep
/// their given order (each load or unload then fails, or succeeds, on its
/// own and says why).
pub(crate) fn order_or_as_given(nodes: &[(String, Vec<String>)]) -> Vec<usize> {
    topo_order(nodes).unwrap_or_else(|_| (0..nodes.len()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, deps: &[&str]) -> (String, Vec<String>) {
        (name.into(), deps.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn orders_dependencies_first() {
        let nodes = vec![n("app", &["db", "log"]), n("db", &["log"]), n("log", &[]), n("x", &["outside"])];
        let order = topo_order(&nodes).unwrap();
        let pos = |name: &str| order.iter().position(|&i| nodes[i].0 == name).unwrap();
        assert!(pos("log") < pos("db") && pos("db") < pos("app"));
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn names_the_cycle() {
        let nodes = vec![n("a", &["b"]), n("b", &["c"]), n("c", &["a"]), n("d", &[])];
        assert_eq!(topo_order(&nodes).unwrap_err(), vec!["a", "b", "c", "a"]);
    }
}
