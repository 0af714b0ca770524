"""The shared figure style: fixed colours for the paper's models, and the same files from the same figure."""

from leukemia_dtl.evaluate.figure_style import model_colours, new_figure, save_figure, styled


def test_models_keep_their_colours_whatever_else_is_plotted():
    assert model_colours(["efficientnetb3", "vgg19"]) == {
        "vgg19": model_colours(["vgg19"])["vgg19"],
        "efficientnetb3": model_colours(["efficientnetb3"])["efficientnetb3"],
    }
    colours = model_colours(["resnet50", "vgg19", "densenet121"])
    assert len(set(colours.values())) == 3


@styled
def _small_figure():
    figure = new_figure(figsize=(2, 2))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], label="a line")
    axes.legend()
    return figure


def test_the_same_figure_drawn_twice_gives_the_same_files_with_text_of_9_pt_or_more(tmp_path):
    for name in ("first", "second"):
        figure = _small_figure()
        save_figure(figure, tmp_path / f"{name}.png", tmp_path / f"{name}.pdf")
    for suffix in ("png", "pdf"):
        assert (tmp_path / f"first.{suffix}").read_bytes() == (tmp_path / f"second.{suffix}").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["first.pdf", "first.png", "second.pdf", "second.png"]
    sizes = [text.get_fontsize() for text in figure.findobj(lambda artist: hasattr(artist, "get_fontsize"))]
    assert min(sizes) >= 9
