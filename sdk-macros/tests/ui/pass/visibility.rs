//! The handle has the function's visibility; tasks in modules and in function bodies work.

mod tasks {
    use owlclaw::{task, Context};

    #[task]
    pub(crate) async fn public_in_crate(_ctx: Context, n: u32) -> anyhow::Result<u32> {
        Ok(n)
    }

    #[task]
    async fn private(_ctx: Context) -> anyhow::Result<()> {
        Ok(())
    }

    pub(super) mod nested {
        #[owlclaw::task]
        pub(in crate::tasks) async fn restricted(_ctx: owlclaw::Context) -> anyhow::Result<()> {
            Ok(())
        }
    }

    pub(crate) async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<()> {
        private::enqueue(client).await?;
        nested::restricted::enqueue(client).await?;
        Ok(())
    }
}

async fn schedule(client: &owlclaw::Client) -> owlclaw::Result<()> {
    let n: u32 = tasks::public_in_crate::run(client, 1).await?;
    let _ = n;
    tasks::schedule(client).await
}

fn main() {
    #[owlclaw::task]
    async fn local(_ctx: owlclaw::Context) -> anyhow::Result<()> {
        Ok(())
    }

    let _ = schedule;
    assert_eq!(local::NAME, "local");
    let names: Vec<&str> = owlclaw::__private::registered().map(|t| t.spec.name).collect();
    for name in ["public_in_crate", "private", "restricted", "local"] {
        assert!(names.contains(&name), "{name} is registered: {names:?}");
    }
}
