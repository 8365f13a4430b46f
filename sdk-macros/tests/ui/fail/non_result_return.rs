use owlclaw::{task, Context};

#[task]
async fn non_result_return(_ctx: Context) -> String {
    String::new()
}

fn main() {}
