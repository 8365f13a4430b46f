//! Workflows: DAGs of tasks. A workflow is defined like a task (its [`TaskDef`] carries a
//! [`WorkflowShape`]); a run of it is one run whose task runs are its children, started by the
//! engine as their parents succeed. This module holds what is decided without I/O: the shape's
//! checks (unknown parents, duplicates, cycles), what to do next for a workflow run given its
//! task runs, and the plan (stages and critical path).
//!
//! [`TaskDef`]: crate::task::TaskDef

use crate::{RunId, RunStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Most tasks in one workflow.
pub const MAX_WORKFLOW_TASKS: usize = 100;

/// One task of a workflow and the tasks it waits for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowTask {
    /// The task's name.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_\-.:/]{1,128}$"))]
    pub name: String,
    /// The tasks that must succeed before it starts; none for a task that starts with the
    /// workflow.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 100))]
    pub parents: Vec<String>,
}

/// The DAG of a workflow.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowShape {
    /// Its tasks, in the order declared. Each gets the workflow's input.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 100))]
    pub tasks: Vec<WorkflowTask>,
    /// The task whose output is the workflow's output.
    pub output: String,
    /// A task run with a [`WorkflowFailure`] when the workflow fails (not one of `tasks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

/// The input of a workflow's on-failure task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowFailure {
    /// The workflow run that failed.
    pub run_id: RunId,
    /// The workflow's name.
    pub workflow: String,
    /// The task that failed (or was cancelled).
    pub task: String,
    /// Its error.
    pub error: String,
    /// The workflow's input.
    pub input: Value,
}

impl WorkflowShape {
    /// Checks the shape: at least one task, each named once, parents among the tasks, no
    /// cycle (the error names it), the output one of the tasks, the on-failure task not one of
    /// them. The error's field is `workflow`.
    pub fn validate(&self, workflow: &str) -> Result<(), String> {
        if self.tasks.is_empty() {
            return Err(format!("workflow {workflow:?} has no task"));
        }
        if self.tasks.len() > MAX_WORKFLOW_TASKS {
            return Err(format!(
                "workflow {workflow:?} has {} tasks, at most {MAX_WORKFLOW_TASKS}",
                self.tasks.len()
            ));
        }
        let mut seen = HashMap::new();
        for t in &self.tasks {
            crate::task::validate_task_name(&t.name)?;
            if seen.insert(t.name.as_str(), t).is_some() {
                return Err(format!(
                    "workflow {workflow:?} has two tasks named {:?}",
                    t.name
                ));
            }
        }
        for t in &self.tasks {
            for p in &t.parents {
                if !seen.contains_key(p.as_str()) {
                    return Err(format!(
                        "task {:?} of workflow {workflow:?} has the parent {p:?}, which is not a task of the workflow",
                        t.name
                    ));
                }
                if p == &t.name {
                    return Err(format!(
                        "workflow {workflow:?} has a cycle: {0} -> {0}",
                        t.name
                    ));
                }
            }
        }
        if let Some(cycle) = self.cycle() {
            return Err(format!(
                "workflow {workflow:?} has a cycle: {}",
                cycle.join(" -> ")
            ));
        }
        if !seen.contains_key(self.output.as_str()) {
            return Err(format!(
                "the output of workflow {workflow:?} is {:?}, which is not one of its tasks",
                self.output
            ));
        }
        if let Some(f) = &self.on_failure {
            crate::task::validate_task_name(f)?;
            if seen.contains_key(f.as_str()) {
                return Err(format!(
                    "the on-failure task {f:?} of workflow {workflow:?} is also one of its tasks"
                ));
            }
        }
        Ok(())
    }

    /// A cycle through parents, as the task names along it (the first repeated at the end).
    fn cycle(&self) -> Option<Vec<String>> {
        let index: HashMap<&str, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        // 0: not visited, 1: on the path, 2: done.
        let mut mark = vec![0u8; self.tasks.len()];
        let mut path: Vec<usize> = Vec::new();
        fn visit(
            i: usize,
            shape: &WorkflowShape,
            index: &HashMap<&str, usize>,
            mark: &mut [u8],
            path: &mut Vec<usize>,
        ) -> Option<Vec<String>> {
            mark[i] = 1;
            path.push(i);
            for p in &shape.tasks[i].parents {
                let Some(&j) = index.get(p.as_str()) else {
                    continue;
                };
                if mark[j] == 1 {
                    let from = path.iter().position(|&k| k == j).unwrap_or(0);
                    // Along parents, so the edges point backwards: print them forwards.
                    let mut names: Vec<String> = path[from..]
                        .iter()
                        .map(|&k| shape.tasks[k].name.clone())
                        .collect();
                    names.push(shape.tasks[j].name.clone());
                    names.reverse();
                    return Some(names);
                }
                if mark[j] == 0 {
                    if let Some(c) = visit(j, shape, index, mark, path) {
                        return Some(c);
                    }
                }
            }
            path.pop();
            mark[i] = 2;
            None
        }
        for i in 0..self.tasks.len() {
            if mark[i] == 0 {
                if let Some(c) = visit(i, self, &index, &mut mark, &mut path) {
                    return Some(c);
                }
            }
        }
        None
    }

    /// The task of that name.
    pub fn task(&self, name: &str) -> Option<&WorkflowTask> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// The stages: topological levels, each the tasks whose parents are all in earlier stages
    /// (they can run in parallel), in declaration order. The shape must be valid.
    pub fn stages(&self) -> Vec<Vec<String>> {
        let mut level: HashMap<&str, usize> = HashMap::new();
        let mut left: Vec<&WorkflowTask> = self.tasks.iter().collect();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|t| {
                let parents: Option<Vec<usize>> = t
                    .parents
                    .iter()
                    .map(|p| level.get(p.as_str()).copied())
                    .collect();
                match parents {
                    Some(ls) => {
                        level.insert(&t.name, ls.into_iter().max().map_or(0, |l| l + 1));
                        false
                    }
                    None => true,
                }
            });
            if left.len() == before {
                break; // a cycle: validate() refuses it
            }
        }
        let depth = level.values().copied().max().map_or(0, |d| d + 1);
        let mut stages = vec![Vec::new(); depth];
        for t in &self.tasks {
            if let Some(&l) = level.get(t.name.as_str()) {
                stages[l].push(t.name.clone());
            }
        }
        stages
    }

    /// What to do next for a workflow run, given its task runs by task name (terminal or not).
    pub fn next(&self, runs: &HashMap<String, TaskRun>) -> Next {
        let failed = self.tasks.iter().find_map(|t| {
            let r = runs.get(&t.name)?;
            matches!(r.status, RunStatus::Failed | RunStatus::Cancelled).then(|| {
                (
                    t.name.clone(),
                    r.error.clone().unwrap_or_else(|| r.status.to_string()),
                )
            })
        });
        if let Some((task, error)) = failed {
            return Next::Fail { task, error };
        }
        if self.tasks.iter().all(|t| {
            runs.get(&t.name)
                .is_some_and(|r| r.status == RunStatus::Succeeded)
        }) {
            let output = runs
                .get(&self.output)
                .and_then(|r| r.output.clone())
                .unwrap_or(Value::Null);
            return Next::Succeed { output };
        }
        let start = self
            .tasks
            .iter()
            .filter(|t| !runs.contains_key(&t.name))
            .filter(|t| {
                t.parents.iter().all(|p| {
                    runs.get(p)
                        .is_some_and(|r| r.status == RunStatus::Succeeded)
                })
            })
            .map(|t| t.name.clone())
            .collect();
        Next::Start(start)
    }

    /// The plan: stages, and the critical path by the expected durations (a task without one
    /// counts as zero, and the plan says so).
    pub fn plan(&self, workflow: &str, expected: &HashMap<String, Duration>) -> WorkflowPlan {
        let stages = self.stages();
        // Longest path ending at each task, in stage order.
        let mut best: HashMap<&str, (Duration, Option<&str>)> = HashMap::new();
        for name in stages.iter().flatten() {
            let t = self.task(name).expect("a stage's task is in the shape");
            let own = expected.get(name).copied().unwrap_or_default();
            let (before, via) = t
                .parents
                .iter()
                .filter_map(|p| best.get(p.as_str()).map(|(d, _)| (*d, Some(p.as_str()))))
                .max_by_key(|(d, _)| *d)
                .unwrap_or((Duration::ZERO, None));
            best.insert(name, (before + own, via));
        }
        let mut end = stages
            .iter()
            .flatten()
            .max_by_key(|n| best.get(n.as_str()).map(|(d, _)| *d))
            .map(String::as_str);
        let total = end
            .and_then(|e| best.get(e))
            .map(|(d, _)| *d)
            .unwrap_or_default();
        let mut path = Vec::new();
        while let Some(n) = end {
            path.push(n.to_string());
            end = best.get(n).and_then(|(_, via)| *via);
        }
        path.reverse();
        let tasks = self
            .tasks
            .iter()
            .map(|t| PlannedTask {
                name: t.name.clone(),
                parents: t.parents.clone(),
                expected_ms: expected.get(&t.name).map(|d| d.as_millis() as u64),
            })
            .collect();
        WorkflowPlan {
            schema_version: 1,
            workflow: workflow.to_string(),
            stages,
            tasks,
            critical_path: path,
            critical_path_ms: total.as_millis() as u64,
            on_failure: self.on_failure.clone(),
            output: self.output.clone(),
        }
    }
}

/// What the engine knows of one task run of a workflow run.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRun {
    /// Its status.
    pub status: RunStatus,
    /// Its output, once succeeded.
    pub output: Option<Value>,
    /// Its last error.
    pub error: Option<String>,
}

/// What a workflow run does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Start these tasks (their parents all succeeded); maybe none while others run.
    Start(Vec<String>),
    /// Every task succeeded: the workflow succeeds with this output.
    Succeed {
        /// The output task's output.
        output: Value,
    },
    /// A task failed or was cancelled: the workflow fails.
    Fail {
        /// The task.
        task: String,
        /// Its error.
        error: String,
    },
}

/// A task in a plan.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTask {
    /// Its name.
    pub name: String,
    /// Its parents.
    pub parents: Vec<String>,
    /// The median duration of its last succeeded runs; `null`: no history.
    pub expected_ms: Option<u64>,
}

/// A workflow's plan: what runs in parallel, and what takes longest.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowPlan {
    /// The document's version: 1.
    pub schema_version: u32,
    /// The workflow.
    pub workflow: String,
    /// Topological levels: the tasks of one stage can run in parallel.
    pub stages: Vec<Vec<String>>,
    /// Every task, with its expected duration.
    pub tasks: Vec<PlannedTask>,
    /// The longest chain of tasks by expected duration.
    pub critical_path: Vec<String>,
    /// Its expected duration (tasks with no history count as 0).
    pub critical_path_ms: u64,
    /// The task run when the workflow fails.
    pub on_failure: Option<String>,
    /// The task whose output is the workflow's.
    pub output: String,
}

/// One task of a workflow run, as shown with the run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowTaskRun {
    /// The task.
    pub task: String,
    /// Its parents in the workflow.
    pub parents: Vec<String>,
    /// Its run, once created (its id is [`RunId::in_workflow`] of the workflow run's).
    pub run_id: Option<RunId>,
    /// `pending` (waiting for its parents), `skipped` (a task it depends on failed, or the
    /// workflow was cancelled), or its run's status.
    pub status: String,
    /// Why it is skipped or pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When its run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When its run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// The task runs of a workflow run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRunTasks {
    /// The workflow run.
    pub run_id: RunId,
    /// The workflow.
    pub workflow: String,
    /// Its tasks in declaration order.
    pub tasks: Vec<WorkflowTaskRun>,
    /// The on-failure task's run, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<WorkflowTaskRun>,
}

/// A task run as the view shows it: its id, status, start and finish.
pub type TaskRunTimes = (
    RunId,
    RunStatus,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// Builds the view of a workflow run's tasks from its shape and its children by task name.
pub fn task_runs(
    shape: &WorkflowShape,
    workflow_status: RunStatus,
    runs: &BTreeMap<String, TaskRunTimes>,
) -> (Vec<WorkflowTaskRun>, Option<WorkflowTaskRun>) {
    let failed: Option<&str> = shape.tasks.iter().find_map(|t| {
        let (_, s, _, _) = runs.get(&t.name)?;
        matches!(s, RunStatus::Failed | RunStatus::Cancelled).then_some(t.name.as_str())
    });
    let view = |name: &str, parents: Vec<String>| match runs.get(name) {
        Some((id, status, started, finished)) => WorkflowTaskRun {
            task: name.to_string(),
            parents,
            run_id: Some(*id),
            status: status.to_string(),
            reason: None,
            started_at: *started,
            finished_at: *finished,
        },
        None => {
            let (status, reason) = match (failed, workflow_status) {
                (_, RunStatus::Cancelled) => ("skipped", "the workflow was cancelled".into()),
                (Some(f), _) => ("skipped", format!("task {f:?} of the workflow failed")),
                (None, s) if s.is_terminal() => ("skipped", format!("the workflow is {s}")),
                _ if parents.is_empty() => ("pending", "waiting for the workflow to start".into()),
                _ => ("pending", format!("waiting for {}", parents.join(", "))),
            };
            WorkflowTaskRun {
                task: name.to_string(),
                parents,
                run_id: None,
                status: status.into(),
                reason: Some(reason),
                started_at: None,
                finished_at: None,
            }
        }
    };
    let tasks = shape
        .tasks
        .iter()
        .map(|t| view(&t.name, t.parents.clone()))
        .collect();
    let on_failure = shape
        .on_failure
        .as_ref()
        .filter(|f| runs.contains_key(*f))
        .map(|f| view(f, Vec::new()));
    (tasks, on_failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(edges: &[(&str, &[&str])]) -> WorkflowShape {
        WorkflowShape {
            tasks: edges
                .iter()
                .map(|(n, ps)| WorkflowTask {
                    name: n.to_string(),
                    parents: ps.iter().map(|p| p.to_string()).collect(),
                })
                .collect(),
            output: edges.last().map_or("", |e| e.0).to_string(),
            on_failure: None,
        }
    }

    fn run(status: RunStatus) -> TaskRun {
        TaskRun {
            status,
            output: Some(Value::from(status.to_string())),
            error: (status == RunStatus::Failed).then(|| "boom".to_string()),
        }
    }

    #[test]
    fn a_diamond_has_three_stages_and_starts_in_order() {
        let s = shape(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        s.validate("w").unwrap();
        assert_eq!(s.stages(), vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
        let mut runs = HashMap::new();
        assert_eq!(s.next(&runs), Next::Start(vec!["a".into()]));
        runs.insert("a".to_string(), run(RunStatus::Running));
        assert_eq!(s.next(&runs), Next::Start(vec![]));
        runs.insert("a".to_string(), run(RunStatus::Succeeded));
        assert_eq!(s.next(&runs), Next::Start(vec!["b".into(), "c".into()]));
        runs.insert("b".to_string(), run(RunStatus::Succeeded));
        runs.insert("c".to_string(), run(RunStatus::Queued));
        assert_eq!(s.next(&runs), Next::Start(vec![]));
        runs.insert("c".to_string(), run(RunStatus::Succeeded));
        assert_eq!(s.next(&runs), Next::Start(vec!["d".into()]));
        runs.insert("d".to_string(), run(RunStatus::Succeeded));
        assert_eq!(
            s.next(&runs),
            Next::Succeed {
                output: Value::from("succeeded")
            }
        );
        runs.insert("c".to_string(), run(RunStatus::Failed));
        assert_eq!(
            s.next(&runs),
            Next::Fail {
                task: "c".into(),
                error: "boom".into()
            }
        );
    }

    #[test]
    fn bad_shapes_are_refused_naming_the_problem() {
        let err = |s: WorkflowShape| s.validate("w").unwrap_err();
        assert!(err(shape(&[])).contains("no task"));
        assert!(err(shape(&[("a", &[]), ("a", &[])])).contains("two tasks named \"a\""));
        assert!(err(shape(&[("a", &["x"])])).contains("the parent \"x\", which is not a task"));
        assert_eq!(
            err(shape(&[
                ("a", &["c"]),
                ("b", &["a"]),
                ("c", &["b"]),
                ("d", &[])
            ])),
            "workflow \"w\" has a cycle: a -> b -> c -> a"
        );
        assert_eq!(
            err(shape(&[("a", &["a"])])),
            "workflow \"w\" has a cycle: a -> a"
        );
        let mut s = shape(&[("a", &[])]);
        s.output = "z".into();
        assert!(err(s).contains("output"));
        let mut s = shape(&[("a", &[])]);
        s.on_failure = Some("a".into());
        assert!(err(s).contains("also one of its tasks"));
    }

    #[test]
    fn the_critical_path_follows_the_longest_chain() {
        let s = shape(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])]);
        let ms = |n| Duration::from_millis(n);
        let expected: HashMap<String, Duration> = [
            ("a".to_string(), ms(10)),
            ("b".to_string(), ms(100)),
            ("c".to_string(), ms(20)),
            ("d".to_string(), ms(5)),
        ]
        .into();
        let plan = s.plan("w", &expected);
        assert_eq!(plan.critical_path, vec!["a", "b", "d"]);
        assert_eq!(plan.critical_path_ms, 115);
        let none = s.plan("w", &HashMap::new());
        assert_eq!(none.critical_path_ms, 0);
        assert_eq!(none.tasks[0].expected_ms, None);
    }

    #[test]
    fn tasks_not_started_after_a_failure_are_skipped_with_a_reason() {
        let s = shape(&[("a", &[]), ("b", &["a"])]);
        let mut runs = BTreeMap::new();
        let id = RunId::new();
        runs.insert("a".to_string(), (id, RunStatus::Failed, None, None));
        let (tasks, _) = task_runs(&s, RunStatus::Failed, &runs);
        assert_eq!(tasks[0].status, "failed");
        assert_eq!(tasks[1].status, "skipped");
        assert_eq!(
            tasks[1].reason.as_deref(),
            Some("task \"a\" of the workflow failed")
        );
        let (tasks, _) = task_runs(&s, RunStatus::Running, &BTreeMap::new());
        assert_eq!(tasks[1].status, "pending");
        assert_eq!(tasks[1].reason.as_deref(), Some("waiting for a"));
    }
}
