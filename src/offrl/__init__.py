"""offrl: offline reinforcement learning in JAX.

    import offrl
    result = offrl.fit(offrl.algos.iql.Config(), "pendulum-mixed", steps=20_000, seeds=4)
    agent = offrl.load_agent(result.run_dir)
    action = agent.act(observation)
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import offrl` stays cheap and free of import cycles
    if name == "fit":
        from offrl.train import fit

        return fit
    if name == "load_agent":
        from offrl.agent import load_agent

        return load_agent
    if name == "load_dataset":
        from offrl.data import load_dataset

        return load_dataset
    if name == "algos":
        import offrl.algos as algos

        return algos
    raise AttributeError(f"module 'offrl' has no attribute {name!r}")


__all__ = ["__version__", "fit", "load_agent", "load_dataset", "algos"]
