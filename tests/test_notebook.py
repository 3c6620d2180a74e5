"""notebooks/dann.ipynb runs from top to bottom on tiny data, and is kept without outputs."""

import base64
import json
import os

import nbclient
import nbformat

from conftest import REPOSITORY, write_fake_bsds_tgz, write_fake_mnist

NOTEBOOK = os.path.join(REPOSITORY, "notebooks", "dann.ipynb")


def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def test_the_notebook_is_kept_without_outputs():
    cells = [cell for cell in read_notebook().cells if cell.cell_type == "code"]
    assert cells and all(cell.outputs == [] and cell.execution_count is None for cell in cells)


def test_the_notebook_builds_mnistm_trains_evaluates_and_draws_every_figure(tmp_path):
    notebook = read_notebook()
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1
    write_fake_mnist(str(tmp_path / "mnist.npz"), train_count=128, test_count=24)
    # Every path the notebook writes is in tmp_path; float32, as the rest of the suite computes.
    parameters[0].source = "\n".join([
        f"MNIST_PATH = {str(tmp_path / 'mnist.npz')!r}",
        f"BSDS_PATH = {write_fake_bsds_tgz(str(tmp_path / 'BSR_bsds500.tgz'))!r}",
        f"MNISTM_PATH = {str(tmp_path / 'mnist_m.npz')!r}",
        "EPOCHS = 1.0", "RUN_NAME = 'notebook-test'",
        f"LOG_DIR, CHECKPOINT_DIR, FIGURE_DIR = {str(tmp_path / 'logs')!r}, {str(tmp_path / 'checkpoints')!r}, "
        f"{str(tmp_path / 'figures')!r}",
        "TSNE_COUNT = 20", "PRECISION = 'float32'"])
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.join(REPOSITORY, "notebooks")}}).execute()

    def text_of(cell):
        return "".join(output.get("text", "") for output in cell.outputs)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    grl = next(cell for cell in code if "reverse_gradient" in cell.source)
    assert "gradient through GRL:  [-1.  2. -3.]" in text_of(grl)
    assert "forward:               [ 1. -2.  3.]" in text_of(grl)
    with open(tmp_path / "logs" / "notebook-test" / "final.json", encoding="utf-8") as stream:
        final = json.load(stream)
    assert final["steps"] == 2  # 128 digits, 64 a step
    training = next(cell for cell in code if "Trainer(" in cell.source)
    assert f"MNIST-M test accuracy {final['val/target_acc']:.4f} after 2 steps" in text_of(training)
    # The MNIST-M preview, two curve figures, the confusion matrix and the t-SNE, each a PNG.
    pictures = [base64.b64decode(output["data"]["image/png"]) for cell in code for output in cell.outputs
                if "image/png" in output.get("data", {})]
    assert len(pictures) == 5 and all(picture.startswith(b"\x89PNG") for picture in pictures)
    assert sorted(os.listdir(tmp_path / "figures")) == ["confusion_mnistm.png", "curves_accuracy.png",
                                                        "curves_schedule.png", "tsne.png"]
