"""A hyperparameter sweep of fastsgd.MLPClassifier on a Dask cluster.

    python examples/dask_sweep.py                       # a LocalCluster on this machine
    python examples/dask_sweep.py --scheduler tcp://host:8786   # an existing cluster
    python examples/dask_sweep.py --data DIR            # full MNIST (default: the bundled sample)

scikit-learn's GridSearchCV hands its trials to joblib; under
``joblib.parallel_backend("dask")`` they run as tasks on the Dask workers.
Each trial trains with one thread (fastsgd's rule for fits outside the main
thread or in a worker process), so a worker with T threads runs T trials at
once without oversubscribing its cores. The workers need fastsgd and
scikit-learn installed; the data travel to them with the tasks.

Needs ``pip install 'fastsgd[dask]'`` (scikit-learn and dask.distributed).
"""
import argparse
import time
import warnings

import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastsgd
from fastsgd.datasets import load_mnist, load_mnist_sample


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scheduler", help="address of a running Dask scheduler "
                                        "(default: start a LocalCluster)")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--data", help="folder with the MNIST IDX files (default: bundled sample)")
    ap.add_argument("--samples", type=int, default=5000, help="training samples used")
    ap.add_argument("--max-iter", type=int, default=10)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # short runs on purpose

    if args.data:
        (X, y), (X_test, y_test) = load_mnist(args.data, download=False)
    else:
        (X, y), (X_test, y_test) = load_mnist_sample()
    X, y = X[:args.samples], y[:args.samples]

    model = make_pipeline(StandardScaler(), fastsgd.MLPClassifier(
        hidden_layer_sizes=(64,), batch_size=128, max_iter=args.max_iter, random_state=0))
    grid = GridSearchCV(model, {
        "mlpclassifier__solver": ["adam", "sgd"],
        "mlpclassifier__alpha": [1e-4, 1e-2],
        "mlpclassifier__learning_rate_init": [1e-3, 1e-2],
    }, cv=3, n_jobs=-1)

    if args.scheduler:
        client = Client(args.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=args.threads_per_worker,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        print(f"Dask: {client}")
        t0 = time.perf_counter()
        with joblib.parallel_backend("dask"):
            grid.fit(X, y)
        seconds = time.perf_counter() - t0
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    n_trials = len(grid.cv_results_["params"]) * grid.n_splits_
    print(f"{n_trials} trials in {seconds:.1f} s")
    order = np.argsort(grid.cv_results_["rank_test_score"])
    for i in order[:5]:
        print(f"  {grid.cv_results_['mean_test_score'][i]:.4f}  {grid.cv_results_['params'][i]}")
    print(f"best: {grid.best_params_}; test accuracy {grid.score(X_test, y_test):.4f}")


if __name__ == "__main__":
    main()
