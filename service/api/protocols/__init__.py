"""Wire schemas of the protocols other tools already speak, one module per protocol: OpenAI's
completions API (``openai``) and SandboxFusion's ``run_code`` (``sandbox_fusion``). Routes
translate them into the project's own use cases at the edge (service/core)."""
