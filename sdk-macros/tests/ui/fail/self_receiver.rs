use owlclaw::{task, Context};

struct Mailer;

impl Mailer {
    #[task]
    async fn self_receiver(&self, _ctx: Context) -> anyhow::Result<()> {
        Ok(())
    }
}

fn main() {}
