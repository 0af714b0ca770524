from conftest import REPO
from leukemia_dtl.evaluate.rulegraph import parse_rulegraph, plot_rulegraph, snakemake_rulegraph


def test_rule_graph_of_the_paper_config_has_the_method_steps_in_order():
    nodes, edges = parse_rulegraph(snakemake_rulegraph(str(REPO / "Snakefile"), [str(REPO / "config/config.yaml")]))
    names = set(nodes.values())
    assert {"download_kaggle", "inventory", "split_dataset", "train_model", "predict_model", "compare_models"} <= names
    assert "all" not in names and "generate_demo_archive" not in names
    named_edges = {(nodes[a], nodes[b]) for a, b in edges}
    assert ("train_model", "predict_model") in named_edges and ("split_dataset", "train_model") in named_edges
    figure = plot_rulegraph(
        "\n".join(f'{i}[label = "{n}"];' for i, n in nodes.items()) + "\n" + "\n".join(f"{a} -> {b}" for a, b in edges)
    )
    assert {text.get_text() for text in figure.axes[0].texts if text.get_text()} == names


def test_rule_graph_reads_an_overlay_config_on_top_of_its_base(tmp_path):
    # Users layer config files (`--configfile config/demo.yaml mine.yaml`); the overlay alone does not
    # validate, so the rule graph must get both, as one flag.
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("seeds: [0]\nmodels:\n  vgg19:\n    epochs: 2\n")
    configs = [str(REPO / "config/demo.yaml"), str(overlay)]
    nodes, _ = parse_rulegraph(snakemake_rulegraph(str(REPO / "Snakefile"), configs))
    assert "generate_demo_archive" in nodes.values()
